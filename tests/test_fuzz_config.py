"""Fuzzing the config boundary (hypothesis): random configs — random keys (typos included) at random
depths set to random types and values (wrong types, out-of-range and non-finite numbers, huge
integers, inconsistent combinations), sections replaced or deleted — either load and run, or fail
with a ConfigError / FileNotFoundError whose message starts with the field it is about. Any other
exception (a traceback from inside JAX, a KeyError, ...) fails the test.

Every example is validated (``config_from_dict``, the output folder, the task and every scheme's
trainer: everything the CLI does before compiling); the first few valid ones with small sizes are
also run in their smoke form (2 trials, 2 steps). The examples are derandomized, so the test is
deterministic.

The validation gaps this search found once (unformattable out_dir, seeds >= 2**32, repeated
lr_boundaries, k on fixed-k codes, a non-CSV data_path, missing TFDS data) are pinned by the
regression tests at the bottom.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jax_ec.attacks import ATTACKS, PLACEMENTS
from jax_ec.config import (CODES, PARTITIONINGS, TASKS, ConfigError, ExperimentConfig, config_from_dict, load_config,
                           smoke_config)
from jax_ec.experiment import DivergenceError, run_experiment
from jax_ec.tasks import make_task
from jax_ec.plan import group_schemes, make_schemes

SYNTHETIC = {
    "name": "fuzz", "seed": 0, "trials": 2,
    "task": {"name": "synthetic", "num_samples": 96, "num_features": 4, "num_classes": 3, "hidden": [4]},
    "n": 5, "b": 1, "attack": "reverse", "partitioning": "split", "batch_size": 20, "steps": 2, "eval_every": 1,
    "optim": {"lr": 0.05, "lr_boundaries": [], "worker_momentum": 0.0},
    "schemes": [{"name": "u", "code": "uncoded"}, {"name": "b", "code": "bernoulli", "r": 2}],
}
AMAZON = {
    "name": "fuzz_amazon", "trials": 2, "task": {"name": "amazon", "n_train": 1500}, "steps": 2, "eval_every": 1,
    "schemes": [{"name": "s", "code": "uncoded"}, {"name": "c", "code": "bernoulli", "r": 2}],
}
MATRIX = [[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 0, 0], [0, 1, 0]]

TOP = [f for f in ExperimentConfig.model_fields]
SECTIONS = {
    "task": ["name", "data_path", "n_train", "num_samples", "num_features", "num_classes", "hidden", "shuffle",
             "model", "width", "data_dir", "download", "augment", "train_samples", "test_samples"],
    "optim": ["lr", "lr_boundaries", "lr_decay", "momentum", "weight_decay", "worker_momentum"],
    "time": ["t_partition", "bandwidth"],
    "runtime": ["trial_batching", "step_loop", "vote", "conv_rule", "formulation", "memory_check"],
}
SCHEME_KEYS = ["name", "code", "r", "k", "nonempty_rows", "matrix", "attack", "b", "attack_scale", "aggregator",
               "rho", "noise_std", "noise_model", "lr", "sweep"]
TYPOS = ["trails", "sead", "atack", "schemas", "optim.lrr", "task.nmae", "task.shufle", "time.bandwith",
         "schemes.0.cod", "schemes.1.rr", "eval", "n_workers", "batchsize"]
NAMES = [*TASKS, *CODES, *ATTACKS, *PLACEMENTS, *PARTITIONINGS, "vote", "signed_sum", "median", "mean",
         "repetition", "auto", "map", "vmap", "mlp", "cnn", "resnet18", "", "none", "None", "true", "False",
         "1e-3", "nan", "inf"]

def values(existing_file: str):
    scalars = st.one_of(
        st.none(), st.booleans(),
        st.integers(-3, 40),
        st.sampled_from([0, -1, 10 ** 6, 2 ** 31, 2 ** 32, 10 ** 30]),
        st.floats(allow_nan=True, allow_infinity=True, width=64),
        st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.5, 2.0, 1e-12, 1e308]),
        st.sampled_from(NAMES),
        st.text(alphabet="abcxyz_.-/ 01", max_size=6),
        st.sampled_from(["/no/such/file.csv", existing_file, "."]),
    )
    return st.one_of(
        scalars,
        st.lists(st.one_of(st.integers(-2, 8), st.floats(-1, 3), st.sampled_from([None, "x", True])), max_size=4),
        st.sampled_from([MATRIX, [[1, 0], [0]], [[]], [[2, 0]], [[1]] * 5, [[1, 0, 0]] * 5, [[0, 0, 0]] * 5]),
        st.dictionaries(st.sampled_from(["name", "code", "r", "x", 1]), scalars, max_size=2),
        st.lists(st.dictionaries(st.sampled_from(SCHEME_KEYS + ["typo"]), scalars, max_size=3), max_size=2),
    )


PLAUSIBLE = {  # values that often keep a config valid, so that valid configs get fuzzed too
    "n": [3, 5, 6, 7, 15], "b": [0, 1, 2, 3], "attack": list(ATTACKS), "placement": list(PLACEMENTS),
    "direction": [1, -1], "trials": [1, 2], "seed": [0, 1, 7], "steps": [1, 2, None], "eval_every": [1, 2, 5],
    "noise_std": [0.0, 0.1], "trial_batching": ["auto", "map", "vmap"], "formulation": ["auto", "dense"],
    "target": [None, 0.5, 1.0, 80, -0.1], "code": list(CODES), "r": [1.0, 2, 2.5], "aggregator": ["vote", "signed_sum",
    "median", "mean", "repetition", "krum", "nnm+trimmed_mean"], "attack_scale": [None, 0.1, 100, 0],
    "rho": [1.0, 0.5], "lr": [0.01, 1e-3], "shuffle": [True, False, "False"],
    "worker_momentum": [0.0, 0.9], "momentum": [0.0, 0.9], "weight_decay": [0.0, 1e-4], "hidden": [[4], [], 3],
    "num_classes": [2, 3], "num_features": [2, 4], "num_samples": [64, 96], "batch_size": [15, 20, 30, 225],
    "partitioning": list(PARTITIONINGS), "nonempty_rows": [True, False], "lr_boundaries": [[], [1], [1, 2]],
    "n_train": [1500, 26325], "eval_every_epochs": [None, 0.5, 1e-9], "name": ["fuzz", "", "a/b"],
}


def paths():
    return st.one_of(
        st.sampled_from(TOP),
        st.sampled_from([f"{sec}.{key}" for sec, keys in SECTIONS.items() for key in keys]),
        st.builds(lambda i, key: f"schemes.{i}.{key}", st.integers(0, 2), st.sampled_from(SCHEME_KEYS)),
        st.sampled_from(TYPOS),
        st.from_regex(r"[a-z_]{1,8}(\.[a-z_]{1,6})?", fullmatch=True),
    )


def _set(data: dict, path: str, value, delete: bool) -> None:
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return
            node = node[int(part)]
        elif isinstance(node, dict):
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
        else:
            return
    last = parts[-1]
    if isinstance(node, list):
        if last.isdigit() and int(last) < len(node):
            if delete:
                del node[int(last)]
            else:
                node[int(last)] = value
    elif isinstance(node, dict):
        if delete:
            node.pop(last, None)
        else:
            node[last] = value


# A field: dotted names with list indices and, for a swept scheme, its grid point (schemes[0][b=2].r).
FIELD = re.compile(r"(--set [\w.]+|[A-Za-z_0-9]+(\[[^\]]+\])*(\.[A-Za-z_0-9]+(\[[^\]]+\])*)*)")


def check_message(exc: Exception, data: dict) -> None:
    message = str(exc)
    head = message.split(": ", 1)[0]
    assert ": " in message and FIELD.fullmatch(head), f"message does not start with a field: {message!r}"
    root = re.split(r"[.\[]", head.removeprefix("--set "))[0]
    allowed = set(TOP) | {"config"} | {str(k) for k in data}
    assert root in allowed, f"message starts with {head!r}, not a field of the config: {message!r}"


_tasks: dict = {}
RUNS = {"left": 2}


def small(cfg) -> bool:
    t = cfg.task
    ks = [cfg.scheme_k(s) for s in cfg.expanded_schemes()]
    sizes = cfg.n <= 16 and max(ks) <= 16 and len(cfg.expanded_schemes()) <= 3 and cfg.batch_size <= 512
    if t.name == "synthetic":
        return sizes and (t.num_samples <= 2048 and t.num_features <= 32 and t.num_classes <= 16
                          and all(h <= 32 for h in t.hidden) and len(t.hidden) <= 3)
    return sizes and t.name == "amazon" and t.n_train <= 3000


def check(data: dict, tmp_path) -> None:
    try:
        cfg = config_from_dict(data)
        cfg.output_dir()
        if not small(cfg):
            return  # valid, but too large to build here (no upper bounds on sizes: see the report)
        key = (cfg.task, cfg.seed if cfg.task.name == "synthetic" else 0)
        if key not in _tasks:
            _tasks[key] = make_task(cfg.task, cfg.seed)
        task = _tasks[key]
        make_schemes(cfg, task.num_train)
    except (ConfigError, FileNotFoundError) as exc:
        check_message(exc, data)
        return
    if RUNS["left"] > 0:
        RUNS["left"] -= 1
        try:
            run_experiment(smoke_config(cfg), tmp_path / f"run{RUNS['left']}", progress_bar=False, task=task,
                           checkpoint_every_s=None)
        except DivergenceError:
            pass  # a run that stops cleanly on NaN (e.g. a fuzzed huge step size) is a fine outcome


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(["synthetic", "amazon"]), data=st.data())
def test_random_configs_run_or_fail_with_a_field_message(base, data, tmp_path):
    config = copy.deepcopy(SYNTHETIC if base == "synthetic" else AMAZON)
    existing = str(Path(__file__))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(paths())
        plausible = PLAUSIBLE.get(path.rsplit(".", 1)[-1])
        value = (data.draw(st.sampled_from(plausible)) if plausible and data.draw(st.booleans())
                 else data.draw(values(existing)))
        _set(config, path, value, delete=False)
    if data.draw(st.booleans()):
        _set(config, data.draw(paths()), None, delete=True)
    check(config, tmp_path)


def _yaml_text(config: dict) -> list[str]:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False).splitlines()


KEY_LINE = re.compile(r"^\s*[A-Za-z_]\w*:")


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(["synthetic", "amazon"]), data=st.data())
def test_random_yaml_files_load_or_fail_with_a_field_message(base, data, tmp_path):
    """The text of a config file, lines dropped or swapped for other YAML (blank, a comment, a list
    item, a scalar, broken YAML, numbers in scientific notation, a percentage target) and maybe a
    mapping key's line written twice: it loads, or fails with one ConfigError naming a field or
    ``config``; a key written twice in one mapping is always refused as a repeated key."""
    lines = _yaml_text(SYNTHETIC if base == "synthetic" else AMAZON)
    for _ in range(data.draw(st.integers(0, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        if data.draw(st.booleans()) and len(lines) > 1:
            del lines[i]
        else:
            lines[i] = data.draw(st.sampled_from(["", "# a comment", "- 1", "just text", "null", "{}", "x: [1, 2",
                                                  "trials: 1e3", "steps: 1e3", "target: 80", "  lr: 1e-3"]))
    keys = [i for i, line in enumerate(lines) if KEY_LINE.match(line)]
    repeated = data.draw(st.sampled_from(keys)) if keys and data.draw(st.booleans()) else None
    if repeated is not None:
        lines.insert(repeated + 1, lines[repeated])      # the same key again, in the same mapping
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    try:
        load_config(path)
    except ConfigError as exc:
        check_message(exc, {})
        if repeated is not None:
            assert "repeated key" in str(exc) or "is not valid YAML" in str(exc), str(exc)
        return
    assert repeated is None, f"a repeated key was accepted: {lines[repeated]!r}"


def test_valid_examples_were_run():
    """The fuzz test above ran a few valid configs end to end (ordering: it runs first in this file)."""
    assert RUNS["left"] < 2


# ---------------------------------------------------------------------------------------------
# Validation gaps the fuzzing found, fixed and pinned
# ---------------------------------------------------------------------------------------------

def _outcome(data: dict, run_task: bool = True):
    cfg = config_from_dict(data)
    cfg.output_dir()
    if run_task:
        task = make_task(cfg.task, cfg.seed)
        make_schemes(cfg, task.num_train)
    return cfg


@pytest.mark.parametrize("out_dir", ["results/{nme}", "results/{", "results/{0}"])
def test_gap_out_dir_format_is_validated(out_dir):
    with pytest.raises(ConfigError, match=r"^out_dir: "):
        _outcome({**SYNTHETIC, "out_dir": out_dir}, run_task=False)


@pytest.mark.parametrize("seed", [2 ** 32, 2 ** 63])
def test_gap_seed_range_is_validated(seed):
    with pytest.raises(ConfigError, match=r"^seed: "):
        _outcome({**SYNTHETIC, "seed": seed}, run_task=False)


def test_gap_lr_boundaries_must_be_strictly_increasing():
    with pytest.raises(ConfigError, match=r"^optim\.lr_boundaries: "):
        _outcome({**SYNTHETIC, "optim": {**SYNTHETIC["optim"], "lr_boundaries": [1, 1]}}, run_task=False)


@pytest.mark.parametrize("code", ["uncoded", "draco"])
def test_gap_k_is_checked_against_the_code(code):
    from jax_ec.experiment import prepare_group, run_group
    data = {**SYNTHETIC, "n": 6, "batch_size": 24, "schemes": [{"name": "s", "code": code, "k": 3}]}
    with pytest.raises(ConfigError, match=r"^schemes\[0\]\.k: "):
        cfg = _outcome(data)
        task = make_task(cfg.task, cfg.seed)
        (group,) = group_schemes(make_schemes(cfg, task.num_train))
        run_group(cfg, prepare_group(cfg, 0, group, task), task.data())


def test_gap_amazon_data_path_with_wrong_contents():
    with pytest.raises(ConfigError, match=r"^task\.data_path: "):
        _outcome({**AMAZON, "task": {"name": "amazon", "data_path": __file__}})


def test_gap_missing_tfds_data_message_names_the_field(tmp_path):
    with pytest.raises((ConfigError, FileNotFoundError), match=r"^task\.(data_dir|name|download): "):
        _outcome({**SYNTHETIC, "task": {"name": "mnist", "data_dir": str(tmp_path)}, "batch_size": 20})


# End-to-end and subprocess tests: `python -m pytest -m slow` (CI runs them after the default set).
pytestmark = pytest.mark.slow
