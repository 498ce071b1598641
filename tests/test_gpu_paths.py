"""The GPU's execution choices, run here on the CPU, give the CPU choices' numbers; a CPU path
forced on an accelerator says so.

:func:`jax_ec.runtime.choose` picks, for a GPU: ``vmap`` over trials, the ``scan`` step loop, JAX's
standard (batch-grouped) convolution, and the fused vote where it applies. Each of them can be
forced on any backend (``runtime:`` in the config). Against the CPU's own choices (``map`` for few
trials of models without convolutions, one compiled call per step and the per-partition convolution
rule for convolutional models, the matmul vote in short convolutional runs):

* trial batching, step loop and vote kernel compute the same arithmetic in the same order: the
  trained parameters are equal **bit for bit** (here: all GPU values at once against the CPU's;
  ``tests/test_runtime.py`` runs every combination of them);
* the convolution rule computes each partition's weight gradient either as one ordinary
  convolution or as a slice of one batch-grouped convolution, which XLA may sum in another order
  (the test unrolls every convolution, :data:`jax_ec.models.layers.UNROLL_MIN_MACS` set to 0, so
  that the tiny CNN takes the per-partition path a CIFAR ResNet takes): the partition gradients
  agree within :data:`CONV_GRAD_ATOL`, their signs agree wherever they are farther than that from
  0, and the votes agree wherever the partition signs do.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_ec.models.layers as layers
from jax_ec.attacks import uniform_placement
from jax_ec.codes import bernoulli
from jax_ec.config import load_config
from jax_ec.core import partition_grads
from jax_ec.election import election
from jax_ec.experiment import batch_pairs
from jax_ec.models.layers import conv_rule
from jax_ec.runtime import CPU_PATHS, CpuPathWarning, choose, make_train
from jax_ec.tasks import make_task

from builders import as_numpy, device_data, scheme_of, stacked

ROOT = Path(__file__).resolve().parents[1]
TRIALS, STEPS, N = 2, 3, 5
# Partition gradients of the two convolution rules differ by float32 rounding only: XLA sums a
# weight gradient's products over the partition's samples and pixels in an order that depends on
# the convolution's form. The digits CNN's gradients are at most O(1): 1e-6 is some 30 float32 ulps
# of the largest of them (measured on the CPU: at most 1.5e-8 apart, 3% of the coordinates differ).
CONV_GRAD_ATOL = 1e-6

GPU_VALUES = {"trial_batching": "vmap", "step_loop": "scan", "conv_rule": "standard", "vote": "fused"}


def digits(model: str, **changes) -> object:
    """The digits config with a tiny model, n = 5, one Bernoulli scheme, a short run."""
    overrides = [f"task.model={model}", "task.width=4", f"steps={STEPS}", f"trials={TRIALS}", f"n={N}", "b=1",
                 f"batch_size={2 * N}", "attack=reverse", "schemes=[{name: s, code: bernoulli, r: 2, nonempty_rows: true}]"]
    overrides += [f"{k}={v}" for k, v in changes.items()]
    return load_config(ROOT / "configs" / "digits_byzantine40.yaml", overrides)[0]


def final_params(cfg, task, choices: dict) -> tuple[object, list[np.ndarray]]:
    """STEPS steps of TRIALS trials under the runtime choices given (the others: the CPU's own)."""
    s = scheme_of(cfg, "s", task)
    rt = choose("cpu", task, s.static, TRIALS, s.total_steps, cfg.runtime.model_copy(update=choices))
    train = make_train(s.static, task, rt)
    params = stacked(jax.tree.map(jnp.asarray, s.params), TRIALS)
    data = device_data(task)
    keys = jax.random.split(jax.random.PRNGKey(7), TRIALS)
    run = batch_pairs(train.run, rt.trial_batching)
    with conv_rule(rt.conv_rule):
        state = jax.jit(jax.vmap(train.init))(keys, params)
        if rt.step_loop == "scan":
            state = jax.jit(run, static_argnums=3)(state, params, data, STEPS)
        else:
            one = jax.jit(lambda st, p, d: run(st, p, d, 1))
            for _ in range(STEPS):
                state = one(state, params, data)
    return rt, as_numpy(state.params)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_gpu_choices_give_the_cpu_choices_numbers(model):
    """The GPU's trial batching, step loop and (fused) vote, forced together on the CPU: bitwise the
    CPU choices' parameters after STEPS steps (the convolution rule: next test)."""
    cfg = digits(model)
    task = make_task(cfg.task)
    s = scheme_of(cfg, "s", task)
    cpu = choose("cpu", task, s.static, TRIALS, s.total_steps, cfg.runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CpuPathWarning)     # auto never takes a CPU path on a GPU
        gpu = choose("gpu", task, s.static, TRIALS, s.total_steps, cfg.runtime)
    assert (gpu.trial_batching, gpu.step_loop, gpu.conv_rule) == ("vmap", "scan", "standard")
    if model == "cnn":
        assert (cpu.step_loop, cpu.conv_rule, cpu.vote) == ("python", "per_partition", "fused")
    else:
        assert (cpu.trial_batching, cpu.vote) == ("map", "leafwise")
    _, reference = final_params(cfg, task, {})
    forced = {k: v for k, v in GPU_VALUES.items() if k != "conv_rule"}
    rt, got = final_params(cfg, task, forced)
    assert all(getattr(rt, k) == v for k, v in forced.items())
    for a, b in zip(reference, got):
        np.testing.assert_array_equal(a, b)


def test_the_convolution_rules_agree_within_rounding(monkeypatch):
    """The standard (GPU) and per-partition (CPU) weight-gradient rules, every convolution unrolled:
    partition gradients within CONV_GRAD_ATOL, the same signs beyond it, the same votes where the
    partition signs agree."""
    monkeypatch.setattr(layers, "UNROLL_MIN_MACS", 0)
    cfg = digits("cnn", batch_size=8 * N)
    task = make_task(cfg.task)
    params, model_state = jax.jit(task.init)(jax.random.key(3, impl="rbg"))
    x = jnp.asarray(task.train_x[:8 * N]).reshape(N, 8, *task.train_x.shape[1:])
    y = jnp.asarray(task.train_y[:8 * N]).reshape(N, 8)

    def grads(rule: str) -> np.ndarray:
        with conv_rule(rule):
            fn = jax.jit(lambda p, m, x, y: partition_grads(task.loss, p, m, x, y, jax.random.PRNGKey(0))[0])
            return np.asarray(fn(params, model_state, x, y))

    per_partition, standard = grads("per_partition"), grads("standard")
    np.testing.assert_allclose(per_partition, standard, rtol=0, atol=CONV_GRAD_ATOL)
    beyond = np.abs(per_partition) > CONV_GRAD_ATOL
    np.testing.assert_array_equal(np.sign(per_partition)[beyond], np.sign(standard)[beyond])
    G = jnp.asarray(bernoulli(seed=0, n=N, r=2), jnp.float32)
    byzantine = uniform_placement(jax.random.PRNGKey(1), N, 1)
    votes = [np.asarray(election(G, jnp.sign(jnp.asarray(g)), byzantine, "reverse")) for g in (per_partition, standard)]
    agree = (np.sign(per_partition) == np.sign(standard)).all(axis=0)
    assert agree.mean() > 0.99
    np.testing.assert_array_equal(votes[0][agree], votes[1][agree])


def test_every_choice_is_selectable_on_every_backend():
    """Forced values are taken whatever the backend; a CPU path forced on a GPU warns, naming it."""
    cfg = digits("cnn")
    task = make_task(cfg.task)
    s = scheme_of(cfg, "s", task)
    for name, value in GPU_VALUES.items():
        rt = choose("cpu", task, s.static, TRIALS, s.total_steps, cfg.runtime.model_copy(update={name: value}))
        assert getattr(rt, name) == value
    for (name, value), why in CPU_PATHS.items():
        forced = cfg.runtime.model_copy(update={name: value})
        with pytest.warns(CpuPathWarning, match=rf"^runtime\.{name}: {value} on the gpu backend: ") as record:
            rt = choose("gpu", task, s.static, TRIALS, s.total_steps, forced)
        assert getattr(rt, name) == value
        assert len(record) == 1 and why in str(record[0].message)
        with warnings.catch_warnings():
            warnings.simplefilter("error", CpuPathWarning)
            assert getattr(choose("cpu", task, s.static, TRIALS, s.total_steps, forced), name) == value
    # A model without convolutions has no convolution rule to warn about.
    mlp = digits("mlp")
    task = make_task(mlp.task)
    s = scheme_of(mlp, "s", task)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CpuPathWarning)
        choose("gpu", task, s.static, TRIALS, s.total_steps, mlp.runtime.model_copy(update={"conv_rule": "per_partition"}))


# End-to-end and subprocess tests: `python -m pytest -m slow` (CI runs them after the default set).
pytestmark = pytest.mark.slow
