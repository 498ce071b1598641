"""jax_ec.runtime: the execution choices, decided by rule and forced by the config, never change
the numbers."""

from __future__ import annotations

import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_ec.config import ConfigError, config_from_dict, load_config
from jax_ec.experiment import batch_pairs
from jax_ec.models.layers import conv_rule
from jax_ec.runtime import choose, make_train
from jax_ec.tasks import make_task

from builders import as_numpy, device_data, scheme_of, stacked

ROOT = Path(__file__).resolve().parents[1]


def digits(model: str, **changes):
    overrides = [f"task.model={model}", "task.width=4", "steps=3", "trials=2", "batch_size=30", "attack=reverse",
                 "schemes=[{name: s, code: bernoulli, r: 2, nonempty_rows: true}]"]
    overrides += [f"{k}={v}" for k, v in changes.items()]
    return load_config(ROOT / "configs" / "digits_byzantine40.yaml", overrides)[0]


def test_the_rules_on_the_cpu():
    amazon, _ = load_config(None, ["task.n_train=1500"])
    task = make_task(amazon.task)
    s = scheme_of(amazon, "bernoulli_p2_15", task)
    rt = choose("cpu", task, s.static, 30, s.total_steps, amazon.runtime)
    assert (rt.formulation, rt.trial_batching, rt.step_loop) == ("touched_coordinates", "map", "scan")
    gpu = choose("gpu", task, s.static, 30, s.total_steps, amazon.runtime)
    assert (gpu.formulation, gpu.trial_batching, gpu.conv_rule) == ("touched_coordinates", "vmap", "standard")
    cnn = digits("cnn")
    task = make_task(cnn.task)
    s = scheme_of(cnn, "s", task)
    rt = choose("cpu", task, s.static, 2, s.total_steps, cnn.runtime)
    assert (rt.trial_batching, rt.step_loop, rt.conv_rule, rt.vote) == ("vmap", "python", "per_partition", "fused")
    long = choose("cpu", task, s.static, 2, 10_000, cnn.runtime)
    assert long.vote == "fused"                     # the flat fused vote at any length for convolutions
    gpu = choose("gpu", task, s.static, 2, s.total_steps, cnn.runtime)
    assert (gpu.trial_batching, gpu.step_loop, gpu.conv_rule) == ("vmap", "scan", "standard")
    forced = choose("cpu", task, s.static, 2, s.total_steps,
                    cnn.runtime.model_copy(update=dict(step_loop="scan", vote="fused", conv_rule="standard")))
    assert (forced.step_loop, forced.vote, forced.conv_rule) == ("scan", "fused", "standard")


def test_forcing_the_touched_coordinates_where_they_do_not_apply_is_one_error():
    cfg = config_from_dict({"runtime": {"formulation": "touched_coordinates"}, "noise_std": 0.1,
                            "task": {"name": "amazon", "n_train": 1500}})
    task = make_task(cfg.task)
    s = scheme_of(cfg, "signsgd_mv", task)
    with pytest.raises(ConfigError, match=r"^runtime\.formulation: got 'touched_coordinates'; it applies"):
        choose("cpu", task, s.static, 2, s.total_steps, cfg.runtime)


def _final_state(cfg, task, **choices):
    """3 steps of 2 trials of the config's scheme under the runtime choices given (others auto)."""
    s = scheme_of(cfg, "s", task)
    rt = choose(jax.default_backend(), task, s.static, 2, s.total_steps, cfg.runtime.model_copy(update=choices))
    train = make_train(s.static, task, rt)
    params = stacked(jax.tree.map(jnp.asarray, s.params), 2)
    data = device_data(task)
    keys = jax.random.split(jax.random.PRNGKey(4), 2)
    with conv_rule(rt.conv_rule):
        state = jax.vmap(train.init)(keys, params)
        if rt.step_loop == "scan":
            state = jax.jit(batch_pairs(train.run, rt.trial_batching), static_argnums=3)(state, params, data, 3)
        else:
            one = jax.jit(lambda st, p, d: batch_pairs(train.run, rt.trial_batching)(st, p, d, 1))
            for _ in range(3):
                state = one(state, params, data)
    return rt, state.params


@pytest.mark.slow   # an end-to-end comparison of whole runs: `python -m pytest -m slow`
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_every_choice_gives_the_numbers_of_the_cpu_choices(model):
    """The GPU's choices (vmap trials, scan loop, the standard convolution, the fused vote in a short
    run), forced on the CPU, give the CPU choices' numbers: bit for bit for the trial batching, the
    step loop and the vote kernel; for the convolution rule within float32 rounding of the batched
    bias and input gradients (docs/reproducibility.md), which the sign can amplify, so the
    comparison is of one step there."""
    cfg = digits(model)
    task = make_task(cfg.task)
    rt0, reference = _final_state(cfg, task)
    choices = {"trial_batching": ("vmap", "map"), "step_loop": ("scan", "python"),
               "vote": ("matmul", "fused", "leafwise")}
    for values in itertools.product(*choices.values()):
        forced = dict(zip(choices, values), conv_rule=rt0.conv_rule)
        rt, got = _final_state(cfg, task, **forced)
        assert (rt.trial_batching, rt.step_loop, rt.vote) == values
        for a, b in zip(as_numpy(reference), as_numpy(got)):
            np.testing.assert_array_equal(a, b, err_msg=str(forced))
    if model == "cnn":
        one = digits(model, steps=1)
        _, per_partition = _final_state(one, task, conv_rule="per_partition")
        _, standard = _final_state(one, task, conv_rule="standard")
        for a, b in zip(as_numpy(per_partition), as_numpy(standard)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
