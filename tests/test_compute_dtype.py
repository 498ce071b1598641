"""``task.compute_dtype: bfloat16``: bfloat16 arithmetic in the model, float32 parameters,
gradients and vote, exact sign counts."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_ec.attacks import uniform_placement
from jax_ec.codes import bernoulli
from jax_ec.config import ConfigError, load_config
from jax_ec.core import partition_grads
from jax_ec.election import _counts, election, fused_election, global_vote, local_votes
from jax_ec.experiment import run_experiment
from jax_ec.results import read_metrics_csv
from jax_ec.runtime import choose, make_train
from jax_ec.tasks import make_task

from builders import device_data, scheme_of

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "configs" / "digits_byzantine40.yaml"
ONE_SCHEME = "schemes=[{name: s, code: bernoulli, r: 2, nonempty_rows: true}]"
# bfloat16 keeps 8 significant bits (relative rounding 2^-9 per operation); through the CNN's few
# layers the partition gradients stay within this relative distance (2-norm) of float32's
# (measured on the CPU: 0.03).
BF16_GRAD_RTOL = 0.1


def digits(dtype: str, *more: str):
    """The digits CNN (width 4), n = 5, one Bernoulli scheme, 2 trials of 2 steps."""
    return load_config(DIGITS, [f"task.compute_dtype={dtype}", "task.model=cnn", "task.width=4", "trials=2", "n=5",
                                "b=1", "steps=2", "eval_every=1", "batch_size=10", ONE_SCHEME, *more])[0]


def test_compute_dtype_is_checked_at_load():
    with pytest.raises(ConfigError, match=r"^task\.compute_dtype: got 'float16'; allowed: float32, bfloat16") as err:
        load_config(DIGITS, ["task.compute_dtype=float16"])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^task\.compute_dtype: got 'bfloat16'; applies to the digits"):
        load_config(None, ["task.compute_dtype=bfloat16"])       # the Amazon task has no such model
    assert load_config(DIGITS)[0].task.compute_dtype == "float32"


def test_a_bfloat16_smoke_run_works(tmp_path):
    cfg = digits("bfloat16")
    run_experiment(cfg, tmp_path, progress_bar=False)
    (curve,) = read_metrics_csv(tmp_path / "metrics.csv")
    assert curve.metric.shape == (2, 3) and np.isfinite(curve.metric).all()
    assert "compute_dtype: bfloat16" in (tmp_path / "config.yaml").read_text()


def test_bfloat16_parameters_are_float32_and_the_vote_is_exact():
    """Parameters (after a training step: dtypes by ``jax.eval_shape``) and partition gradients are
    float32; the vote's counts on the bfloat16 model's partition gradients equal NumPy's, in the
    matmul and the fused form."""
    cfg = digits("bfloat16")
    task = make_task(cfg.task)
    s = scheme_of(cfg, "s", task)
    train = make_train(s.static, task, choose("cpu", task, s.static, 1, s.total_steps, cfg.runtime))
    params = jax.tree.map(jnp.asarray, s.params)
    state = jax.eval_shape(train.init, jax.random.PRNGKey(5), params)
    state = jax.eval_shape(train.step, state, params, device_data(task))
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(state.opt_state)} <= {jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}

    k = s.static.k
    model_params, model_state = jax.jit(task.init)(jax.random.key(5, impl="rbg"))
    x = jnp.asarray(task.train_x[:4 * k]).reshape(k, 4, *task.train_x.shape[1:])
    y = jnp.asarray(task.train_y[:4 * k]).reshape(k, 4)

    def grads(t):
        return jax.jit(lambda p, m: partition_grads(t.loss, p, m, x, y, jax.random.PRNGKey(0))[0])(model_params,
                                                                                                   model_state)

    g = grads(task)
    assert g.dtype == jnp.float32 and g.shape == (k, train.num_params)
    # bfloat16 arithmetic happened: not float32's gradients, but near them.
    g32 = grads(make_task(digits("float32").task))
    distance = float(jnp.linalg.norm(g - g32) / jnp.linalg.norm(g32))
    assert 0 < distance < BF16_GRAD_RTOL

    G32 = jnp.asarray(bernoulli(seed=2, n=cfg.n, r=2), jnp.float32)
    byz = uniform_placement(jax.random.PRNGKey(1), cfg.n, cfg.b)
    G, b = np.asarray(G32, np.float64), np.asarray(byz)
    S = np.sign(np.asarray(g, np.float64))
    counts = G @ S                                                  # per worker: a sum of +-1, exact
    C = np.where(b[:, None], -np.sign(counts), np.sign(counts))     # the reverse attack
    master = C.sum(axis=0)
    v = np.sign(master)
    Sj = jnp.sign(g)
    np.testing.assert_array_equal(np.asarray(_counts(G32, Sj)), counts)
    Cj = jnp.where(byz[:, None], -local_votes(G32, Sj), local_votes(G32, Sj))
    np.testing.assert_array_equal(np.asarray(Cj.sum(axis=0)), master)
    np.testing.assert_array_equal(np.asarray(global_vote(Cj)), v)
    for vote in (election(G32, Sj, byz, "reverse"), fused_election(G32, g, byz, "reverse")):
        assert vote.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(vote), v)


def test_a_bfloat16_resnet_keeps_float32_parameters_and_statistics():
    """Shapes and dtypes only (``jax.eval_shape``: nothing compiles): BatchNorm's running statistics,
    the parameters and their gradients stay float32; the logits reach the loss as float32."""
    from jax_ec.models import make_model
    from jax_ec.models.mlp import classification_loss
    model = make_model("resnet18", 10, width=2, compute_dtype="bfloat16")
    x = jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros(x.shape), train=False), jax.random.PRNGKey(0))
    assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    logits, updates = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
    assert logits.dtype == jnp.bfloat16
    assert {a.dtype for a in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}

    def loss(p, stats, x):
        out, _ = model.apply({"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
        return classification_loss(out.astype(jnp.float32), jnp.zeros(x.shape[0], jnp.int32))

    grads = jax.eval_shape(jax.grad(loss), variables["params"], variables["batch_stats"], x)
    assert {a.dtype for a in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


# End-to-end and subprocess tests: `python -m pytest -m slow` (CI runs them after the default set).
pytestmark = pytest.mark.slow
