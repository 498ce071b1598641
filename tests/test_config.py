"""Tests for jax_ec.config: the packaged default, strict validation with clear errors, overrides,
round trips, per-scheme derived values, and the data-size / data-file errors raised before compiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from jax_ec.config import (ConfigError, ExperimentConfig, SchemeConfig, TaskConfig, apply_overrides,
                           config_from_dict, config_to_dict, default_config_path, load_config)

REPO = Path(__file__).resolve().parents[1]


def config_error_of(call) -> ConfigError:
    """The one ConfigError ``call()`` raises: one line, not a chain."""
    with pytest.raises(ConfigError) as info:
        call()
    exc = info.value
    assert isinstance(exc, ValueError)
    assert type(exc) is ConfigError
    assert exc.__cause__ is None and exc.__context__ is None or exc.__suppress_context__  # one error, not a chain
    assert "\n" not in str(exc)
    return exc


def config_error(overrides: list[str] | None = None, data: dict | None = None) -> str:
    """The message of the one ConfigError a bad input raises (overrides on the default, or a dict)."""
    return str(config_error_of(lambda: config_from_dict(data) if data is not None else load_config(None, overrides)))


# ---------------------------------------------------------------------------------------------
# The packaged default = the paper's Amazon setting
# ---------------------------------------------------------------------------------------------


def test_default_config_is_the_paper_setting():
    cfg, raw = load_config(None)
    assert isinstance(cfg, ExperimentConfig)
    assert isinstance(raw, dict)
    assert default_config_path().is_file()
    assert cfg.task.name == "amazon" and cfg.task.n_train == 26325 and cfg.task.shuffle is False
    assert (cfg.n, cfg.b) == (15, 5)
    assert cfg.attack == "directional" and cfg.direction == 1
    assert cfg.placement == "uniform"
    assert cfg.partitioning == "shards"
    assert cfg.batch_size == 225 and cfg.batch_size // cfg.n == 15
    assert cfg.epochs == 8 and cfg.steps is None
    assert cfg.trials >= 10
    assert cfg.optim.worker_momentum == pytest.approx(0.9)
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.optim.lr_boundaries == (1,)
    assert cfg.optim.lr * cfg.optim.lr_decay == pytest.approx(1e-4)
    assert cfg.optim.momentum == 0 and cfg.optim.weight_decay == 0
    assert cfg.noise_std == 0

    assert len(cfg.schemes) == 3
    codes = [s.code for s in cfg.schemes]
    assert codes.count("uncoded") == 2
    (bern,) = [s for s in cfg.schemes if s.code == "bernoulli"]
    assert bern.r == pytest.approx(2.0)
    attacks = sorted(cfg.scheme_attack(s) for s in cfg.schemes)
    assert attacks == ["directional", "directional", "none"]
    bs = sorted(cfg.scheme_b(s) for s in cfg.schemes)
    assert bs == [0, 5, 5]


def test_default_schedule_resolves_to_paper_epochs():
    """117 steps per epoch on 26,325 samples; lr 1e-3 in epoch 1, 1e-4 after."""
    from jax_ec.plan import make_schemes
    from jax_ec.schedule import lr_at
    cfg, _ = load_config(None)
    scheme = make_schemes(cfg, cfg.task.n_train)[2]
    s, p = scheme.static, scheme.params
    assert s.k == 15 and s.per_partition == 15
    assert s.steps_per_epoch == 117
    assert scheme.total_steps == 8 * 117
    assert p.lr_boundaries.tolist() == [117]
    for t, lr in ((0, 1e-3), (116, 1e-3), (117, 1e-4), (8 * 117 - 1, 1e-4)):
        assert float(lr_at(p.lr, p.lr_boundaries, np.int32(t))) == pytest.approx(lr)


def test_configs_amazon_paper_equals_default():
    path = REPO / "configs" / "amazon_paper.yaml"
    assert path.is_file()
    assert load_config(path)[0] == load_config(None)[0]


# ---------------------------------------------------------------------------------------------
# Bad inputs: one ConfigError naming the field, the value and what is allowed
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, field, fragments", [
    (["trails=3"], "trails", ["unknown key", "did you mean 'trials'", "allowed keys"]),
    (["optim.momentun=0.5"], "optim.momentun", ["unknown key", "did you mean 'momentum'"]),
    (["task.nam=synthetic"], "task.nam", ["unknown key", "did you mean 'name'"]),
    (["schemes.1.rr=2"], "schemes[1].rr", ["unknown key", "did you mean 'r'"]),
    (["trials=ten"], "trials", ["'ten'", "integer"]),
    (["n=2.5"], "n", ["2.5", "integer"]),
    (["trials=0"], "trials", ["got 0", ">= 1"]),
    (["n=0"], "n", ["got 0", ">= 1"]),
    (["b=20"], "b", ["got 20", "b < n = 15"]),
    (["b=15"], "b", ["got 15", "b < n = 15"]),
    (["b=-1"], "b", ["got -1", "0 <= b"]),
    (["schemes.2.r=0"], "schemes[2].r", ["got 0.0", "(0, 15]"]),
    (["schemes.2.r=16"], "schemes[2].r", ["got 16.0", "(0, 15]"]),
    (["schemes.2.r=-1.5"], "schemes[2].r", ["got -1.5", "(0, 15]"]),
    (["schemes.2.r=null"], "schemes[2].r", ["None", "(0, 15]"]),
    (["schemes.1.r=2"], "schemes[1].r", ["got 2.0", "bernoulli codes only", "'uncoded'"]),
    (["attack=nuke"], "attack", ["'nuke'", "allowed:", "directional", "reverse"]),
    (["schemes.1.attack=nuke"], "schemes[1].attack", ["'nuke'", "allowed:"]),
    (["placement=everywhere"], "placement", ["'everywhere'", "allowed:", "uniform", "most_loaded"]),
    # Adaptive placement: per scheme too; the omniscient message, a sign aggregator, a small exact search.
    (["schemes.1.placement=anywhere"], "schemes[1].placement", ["'anywhere'", "allowed:", "adaptive_exact"]),
    (["placement=adaptive"], "placement", ["'adaptive'", "attack: omniscient", "'directional'",
                                           "allowed with 'directional': uniform, most_loaded, per_step"]),
    (["attack=omniscient", "schemes.1.placement=adaptive", "schemes.1.aggregator=median"], "schemes[1].placement",
     ["'adaptive'", "vote and signed_sum aggregators", "'median'"]),
    (["attack=omniscient", "placement=adaptive_exact"], "placement",
     ["'adaptive_exact'", "n <= 15 and b <= 3", "n = 15, b = 5", "placement: adaptive"]),
    (["attack=omniscient", "b=3", "schemes.2.placement=adaptive_exact", "schemes.2.b=4"], "schemes[2].placement",
     ["'adaptive_exact'", "n <= 15 and b <= 3", "b = 4"]),
    (["schemes.0.code=lrc"], "schemes[0].code", ["'lrc'", "allowed:", "bernoulli", "matrix"]),
    (["task.name=imagenet"], "task.name", ["'imagenet'", "allowed:", "amazon", "synthetic", "cifar10"]),
    (["partitioning=random"], "partitioning", ["'random'", "allowed:", "shards", "split"]),
    (["runtime.trial_batching=pmap"], "runtime.trial_batching", ["'pmap'", "allowed:", "vmap", "map"]),
    (["trial_batching=map"], "trial_batching", ["moved to runtime.trial_batching"]),
    (["fast_path=false"], "fast_path", ["moved to runtime.formulation"]),
    (["schemes.2.sweep={bb: [1, 2]}"], "schemes[2].sweep.bb", ["did you mean 'b'", "sweepable fields"]),
    (["schemes.2.sweep={b: []}"], "schemes[2].sweep.b", ["non-empty"]),
    (["schemes.2.sweep={b: [1, 20]}"], "schemes[2][b=20].b", ["got 20", "b < n = 15"]),
    (["direction=0"], "direction", ["got 0", "1, -1"]),
    (["batch_size=100"], "batch_size", ["got 100", "k = 15", "partitions"]),
    (["schemes.0.code=paper_n5", "schemes.0.attack=null"], "schemes[0].code", ["'paper_n5'", "n = 5", "15"]),
    (["schemes.1.name=no_attack"], "schemes", ["no_attack", "unique"]),
    (["schemes.0.code=matrix", "schemes.0.matrix=[[1, 2], [0, 1]]"], "schemes[0].matrix", ["2", "0 or 1"]),
    (["schemes.0.code=matrix"], "schemes[0].matrix", ["None", "matrix"]),
    (["schemes.0.code=matrix", "schemes.0.matrix=/nonexistent/dir/code.csv"], "schemes[0].matrix",
     ["/nonexistent/dir/code.csv", "does not exist"]),
    (["schemes.1.matrix=[[1]]"], "schemes[1].matrix", ["code: matrix only"]),
    (["noise_std=-0.5"], "noise_std", ["got -0.5", ">= 0"]),
    (["optim.lr=0"], "optim.lr", ["got 0.0", "> 0"]),
    (["optim.lr=-0.1"], "optim.lr", ["got -0.1", "> 0"]),
    (["optim.lr=.nan"], "optim.lr", ["nan", "finite"]),
    (["optim.worker_momentum=1.0"], "optim.worker_momentum", ["got 1.0", "[0, 1)"]),
    (["optim.lr_boundaries=[3, 1]"], "optim.lr_boundaries", ["(3, 1)", "increasing"]),
    (["eval_every=0"], "eval_every", ["got 0", ">= 1"]),
    (["steps=0"], "steps", ["got 0", "[1, 2147483647]"]),
    (["seed=-1"], "seed", ["got -1", ">= 0"]),
    (["task.n_train=0"], "task.n_train", ["got 0", ">= 1"]),
    (["task.name=synthetic", "task.hidden=[8, 0]"], "task.hidden", ["(8, 0)", ">= 1"]),
    (["time.t_partition=0"], "time.t_partition", ["got 0.0", "> 0"]),
    (["optim=3"], "optim", ["got 3", "mapping"]),
    (["schemes.0.k=0"], "schemes[0].k", ["got 0", ">= 1"]),
    # A target outside the task's metric range (a percentage for a fraction) is never reached.
    (["target=80"], "target", ["got 80.0", "test_auc", "[0, 1]", "80% is 0.8"]),
    (["target=-0.1"], "target", ["got -0.1", "test_auc", "[0, 1]"]),
    (["target=1.5", "task.name=synthetic"], "target", ["got 1.5", "test_accuracy", "[0, 1]"]),
    # Allocations that elect nothing, or files that are not files.
    (["schemes.0.code=matrix", "schemes.0.matrix=[[0]]", "n=1", "b=0", "batch_size=1"], "schemes[0].matrix",
     ["every entry is 0", "never moves"]),
    (["schemes.0.code=matrix", "schemes.0.matrix=/"], "schemes[0].matrix", ["'/'", "is a directory"]),
    (["task.data_path=/"], "task.data_path", ["'/'", "is a directory"]),
    # nonempty_rows: only for bernoulli codes, and not where redrawing would never end.
    (["schemes.1.nonempty_rows=true"], "schemes[1].nonempty_rows", ["applies to bernoulli codes only"]),
    (["schemes.2.nonempty_rows=true", "schemes.2.r=0.01"], "schemes[2].nonempty_rows",
     ["draws per trial", "larger r"]),
    # Fields nothing reads: refused rather than silently ignored.
    (["task.num_samples=100"], "task.num_samples", ["applies to the synthetic task only", "amazon task would ignore"]),
    (["task.model=cnn"], "task.model", ["applies to the digits, cifar10, mnist, fashion_mnist tasks only"]),
    (["task.name=synthetic", "task.n_train=100", "n=5", "b=1", "batch_size=20"], "task.n_train",
     ["applies to the amazon task only"]),
    (["direction=-1", "attack=reverse"], "direction", ["directional attack only"]),
    # Sizes nothing can run.
    (["task.name=synthetic", "task.num_samples=3", "n=3", "b=1", "batch_size=3"], "task.num_samples",
     ["num_samples // 4", ">= 4"]),
    (["steps=1e12"], "steps", ["got 1000000000000", "2147483647"]),
    (["epochs=1e12"], "epochs", ["got 1000000000000", "2147483647"]),
    (["name=''"], "name", ["non-empty"]),
    (["out_dir=' '"], "out_dir", ["folder path"]),
])
def test_bad_value_names_field_value_and_allowed(overrides, field, fragments):
    message = config_error(overrides)
    assert message.startswith(f"{field}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("data, field, fragments", [
    ({"trials": "ten"}, "trials", ["'ten'", "integer"]),
    ({"trials": True}, "trials", ["True", "integer"]),
    ({"n": 2.5}, "n", ["2.5", "integer"]),
    ({"optim": {"lr": "fast"}}, "optim.lr", ["'fast'", "number"]),
    ({"task": {"shuffle": 2}}, "task.shuffle", ["got 2", "boolean"]),
    ({"schemes": [{"name": "a", "nonempty_rows": 2}]}, "schemes[0].nonempty_rows", ["got 2", "boolean"]),
    ({"schemes": [{"code": "uncoded"}]}, "schemes[0].name", ["missing", "required"]),
    ({"schemes": []}, "schemes", ["at least one scheme"]),
    ({"schemes": "uncoded"}, "schemes[0]", ["'uncoded'", "mapping"]),
    ({"task": {"hidden": ["big"]}}, "task.hidden[0]", ["'big'", "integer"]),
    ({"n": 5, "b": 1, "batch_size": 60,
      "schemes": [{"name": "m", "code": "matrix", "matrix": [[1, 0], [0, 1], [1, 1], [0, 0], [1, "x"]]}]},
     "schemes[0].matrix", ["matrix"]),
    ({"n": 5, "b": 1, "batch_size": 60,
      "schemes": [{"name": "m", "code": "matrix", "matrix": [[1, 0], [0, 1]]}]},
     "schemes[0].matrix", ["2 rows", "n = 5"]),
])
def test_bad_dict_value_names_field(data, field, fragments):
    message = config_error(data=data)
    assert message.startswith(f"{field}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ValueError):
        load_config(None, ["trials=0"])


def test_non_mapping_yaml(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"^config: got a list in '.*list\.yaml'; expected a mapping"):
        load_config(path)
    path.write_text("just a string\n")
    with pytest.raises(ConfigError, match=r"^config: got a str in '.*list\.yaml'; expected a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_from_dict([1, 2])  # type: ignore[arg-type]


def test_non_mapping_yaml_with_overrides(tmp_path):
    path = tmp_path / "scalar.yaml"
    path.write_text("just a string\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path, ["trials=3"])


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "null\n", "---\n"])
def test_empty_yaml_is_refused_not_read_as_the_default_job(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    message = str(config_error_of(lambda: load_config(path)))
    assert message.startswith(f"config: '{path}' is empty"), message
    assert "write {} to run every default" in message


def test_explicit_empty_mapping_runs_the_defaults(tmp_path):
    path = tmp_path / "defaults.yaml"
    path.write_text("{}\n")
    assert load_config(path)[0] == ExperimentConfig().validate()


@pytest.mark.parametrize("text, field, lines", [
    ("trials: 3\nn: 5\ntrials: 4\n", "trials", "lines 1 and 3"),
    ("optim:\n  lr: 0.1\n  momentum: 0.5\n  lr: 0.2\n", "optim.lr", "lines 2 and 4"),
    ("schemes:\n  - {name: a}\n  - {name: b, r: 2, code: bernoulli, r: 3}\n", "schemes[1].r", "line 3, twice"),
    ("schemes:\n  - name: a\n    sweep: {b: [1]}\n    sweep: {b: [2]}\n", "schemes[0].sweep", "lines 3 and 4"),
])
def test_repeated_yaml_key_is_refused(tmp_path, text, field, lines):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    message = str(config_error_of(lambda: load_config(path)))
    assert message == f"{field}: repeated key in '{path}' ({lines}); each key may appear once"


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    """A key brought in by ``<<: *anchor`` and written again is YAML's override, not a repeat."""
    path = tmp_path / "merge.yaml"
    path.write_text("optim: &o {lr: 0.1, momentum: 0.5}\nschemes:\n  - {name: a}\ntime:\n  t_partition: 2.0\n"
                    "  bandwidth: 1.0\n")
    assert load_config(path)[0].optim.lr == pytest.approx(0.1)
    from jax_ec.config import read_yaml
    path.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")
    assert read_yaml(path) == {"base": {"x": 1, "y": 2}, "other": {"x": 3, "y": 2}}


@pytest.mark.parametrize("override, field", [
    ("schemes.2.sweep={b: [1], b: [2]}", "--set schemes.2.sweep.b"),
    ("schemes.1={name: x, attack: reverse, name: y}", "--set schemes.1.name"),
    ("optim={lr: 0.1, lr: 0.2}", "--set optim.lr"),
])
def test_repeated_key_in_an_override_value_is_refused(override, field):
    message = config_error([override])
    assert message.startswith(f"{field}: repeated key"), message
    assert "each key may appear once" in message


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope" / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith("config: ")
    assert str(path) in message and "does not exist" in message


def test_config_path_that_is_not_a_file(tmp_path):
    message = str(config_error_of(lambda: load_config(tmp_path)))
    assert message == f"config: '{tmp_path}' is a directory; expected a YAML config file (see configs/)"
    message = str(config_error_of(lambda: load_config("/dev/null")))
    assert message.startswith("config: '/dev/null' is not a regular file"), message


def test_unreadable_config_file(tmp_path, monkeypatch):
    import jax_ec.config as config
    path = tmp_path / "secret.yaml"
    path.write_text("trials: 3\n")
    monkeypatch.setattr(config.os, "access", lambda p, mode: False)   # (tests may run as root)
    message = str(config_error_of(lambda: load_config(path)))
    assert message == f"config: '{path}' cannot be read (permission denied); expected a YAML config file (see configs/)"
    monkeypatch.undo()

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(Path, "read_text", refuse)
    message = str(config_error_of(lambda: load_config(path)))
    assert message.startswith(f"config: cannot read '{path}' (Permission denied)"), message


def test_config_file_that_is_not_text(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00trials: 3")
    message = str(config_error_of(lambda: load_config(path)))
    assert message.startswith(f"config: '{path}' is not UTF-8 text"), message


def test_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("trials: [1, 2\nn: 3\n")
    message = str(config_error_of(lambda: load_config(path)))
    assert message.startswith("config: ")
    assert str(path) in message and "not valid YAML" in message


def test_yaml_nested_too_deeply(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("trials: " + "[" * 5000 + "]" * 5000 + "\n")
    message = str(config_error_of(lambda: load_config(path)))
    assert message.startswith(f"config: '{path}' nests lists or mappings too deeply"), message


def test_yaml_file_with_errors_names_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("n: 5\nb: 1\nbatch_size: 60\noptim:\n  momentun: 0.9\n")
    with pytest.raises(ConfigError, match=r"^optim\.momentun: unknown key; did you mean 'momentum'"):
        load_config(path)


def test_scientific_notation_override_documented_example():
    cfg, _ = load_config(None, ["optim.lr=1e-4"])
    assert cfg.optim.lr == pytest.approx(1e-4)


def test_scientific_notation_for_integers(tmp_path):
    """YAML 1.1 reads ``1e3`` (no dot) as a string; an integer field takes it as 1000, as a float
    field takes ``1e-3``."""
    path = tmp_path / "steps.yaml"
    path.write_text("steps: 1e3\neval_every: 1.0e+2\noptim: {lr: 1e-3}\n")
    cfg, _ = load_config(path)
    assert (cfg.steps, cfg.eval_every, cfg.optim.lr) == (1000, 100, pytest.approx(1e-3))
    assert load_config(None, ["steps=1e3"])[0].steps == 1000
    assert load_config(None, ["steps=1000.0"])[0].steps == 1000
    assert config_error(["steps=1.5e0"]).startswith("steps: got '1.5e0'; expected an integer")


@pytest.mark.parametrize("task, metric", [("amazon", "test_auc"), ("synthetic", "test_accuracy"),
                                          ("digits", "test_accuracy")])
def test_the_target_range_is_the_task_metric_range(task, metric):
    from jax_ec.config import METRIC_RANGES, TASK_METRICS
    from jax_ec.tasks import make_task
    assert TASK_METRICS[task] == metric and METRIC_RANGES[metric] == (0.0, 1.0)
    task_cfg = {"amazon": {"name": "amazon", "n_train": 1500}, "synthetic": {"name": "synthetic", "num_samples": 64},
                "digits": {"name": "digits"}}[task]
    assert make_task(TaskConfig(**task_cfg)).metric_name == metric   # the table says what the task reports
    base = {"task": task_cfg, "n": 4, "b": 1, "batch_size": 8, "schemes": [{"name": "u"}]}
    for target in (0.0, 0.5, 1.0, None):
        assert config_from_dict({**base, "target": target}).target == target


# ---------------------------------------------------------------------------------------------
# Booleans
# ---------------------------------------------------------------------------------------------


def test_booleans_parse_as_booleans():
    assert load_config(None, ["task.shuffle=False"])[0].task.shuffle is False
    assert load_config(None, ["task.shuffle=true"])[0].task.shuffle is True
    assert config_from_dict({"task": {"shuffle": "false"}}).task.shuffle is False
    assert config_from_dict({"task": {"shuffle": "False"}}).task.shuffle is False
    assert config_from_dict({"task": {"shuffle": "true"}}).task.shuffle is True
    assert config_from_dict({"runtime": {"memory_check": "no"}}).runtime.memory_check is False
    cfg = config_from_dict({"schemes": [{"name": "b", "code": "bernoulli", "r": 2, "nonempty_rows": "yes"}]})
    assert cfg.schemes[0].nonempty_rows is True
    for bad in (2, "maybe", 0.5, [True]):
        with pytest.raises(ConfigError, match=r"^task\.shuffle: .*boolean"):
            config_from_dict({"task": {"shuffle": bad}})


# ---------------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------------


def test_apply_overrides_nested_keys_and_copy():
    data = {"optim": {"lr": 0.1}, "task": {"name": "synthetic"}}
    out = apply_overrides(data, ["optim.lr=0.5", "task.hidden=[8, 4]", "time.bandwidth=2.0", "trials=7"])
    assert data == {"optim": {"lr": 0.1}, "task": {"name": "synthetic"}}  # input unchanged
    assert out["optim"]["lr"] == 0.5
    assert out["task"] == {"name": "synthetic", "hidden": [8, 4]}
    assert out["time"] == {"bandwidth": 2.0}
    assert out["trials"] == 7
    assert apply_overrides({}, ["optim.lr=0.5"]) == {"optim": {"lr": 0.5}}
    assert apply_overrides(None, ["seed=3"]) == {"seed": 3}  # type: ignore[arg-type]


def test_apply_overrides_scheme_by_index():
    cfg, raw = load_config(None, ["schemes.2.r=3", "schemes.0.name=clean"])
    assert raw["schemes"][2]["r"] == 3
    assert cfg.schemes[2].r == pytest.approx(3.0)
    assert cfg.schemes[0].name == "clean"
    # Without a `schemes` section the defaults are materialised first.
    data = apply_overrides({}, ["schemes.2.r=4"])
    assert len(data["schemes"]) == 3 and data["schemes"][2]["r"] == 4
    assert config_from_dict(data).schemes[2].r == pytest.approx(4.0)
    # A whole entry can be replaced.
    cfg, _ = load_config(None, ["schemes.1={name: rev, code: uncoded, attack: reverse}"])
    assert cfg.schemes[1] == SchemeConfig(name="rev", attack="reverse")


@pytest.mark.parametrize("override, fragments", [
    ("schemes.5.r=3", ["schemes.5", "not a valid index", "0..2"]),
    ("schemes.x.r=3", ["schemes.x", "not a valid index"]),
    ("schemes.7={name: z}", ["'7'", "not a valid index", "0..2"]),
    ("task.name.x=1", ["task.name", "not a section"]),
])
def test_apply_overrides_bad_path(override, fragments):
    message = config_error([override])
    assert message.startswith(f"--set {override.split('=')[0]}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_apply_overrides_requires_equals():
    message = config_error(["trials"])
    assert message.startswith("--set: got 'trials'; expected key=value"), message


def test_load_config_trials_argument():
    cfg, raw = load_config(None, ["trials=3"], trials=4)
    assert cfg.trials == 4 and raw["trials"] == 4


# ---------------------------------------------------------------------------------------------
# Round trip
# ---------------------------------------------------------------------------------------------


def _rich_config() -> ExperimentConfig:
    return config_from_dict({
        "name": "rich", "seed": 7, "trials": 3, "n": 5, "b": 2, "attack": "directional",
        "direction": -1, "placement": "most_loaded", "noise_std": 0.1, "partitioning": "split",
        "batch_size": 60, "steps": 9, "eval_every": 3, "target": None, "runtime": {"trial_batching": "map"},
        "task": {"name": "synthetic", "num_samples": 300, "num_features": 6, "hidden": [16, 8],
                 "shuffle": True},
        "optim": {"lr": 0.05, "lr_boundaries": [2, 5], "momentum": 0.9, "weight_decay": 1e-4,
                  "worker_momentum": 0.0},
        "time": {"t_partition": 0.5, "bandwidth": 100.0},
        "schemes": [
            {"name": "u"},
            {"name": "b", "code": "bernoulli", "r": 2, "k": 10, "nonempty_rows": True, "attack": "random", "b": 1},
            {"name": "p", "code": "paper_n5"},
            {"name": "m", "code": "matrix", "matrix": [[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 0, 0], [0, 1, 0]]},
            {"name": "clean", "attack": "none"},
        ],
    })


@pytest.mark.parametrize("make", [lambda: load_config(None)[0], _rich_config])
def test_config_round_trip(make):
    cfg = make()
    data = config_to_dict(cfg)
    assert config_from_dict(data) == cfg
    # And through YAML text (as written to config.yaml beside results).
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(data, sort_keys=False))) == cfg


def test_rich_config_values():
    cfg = _rich_config()
    assert cfg.task.hidden == (16, 8)
    assert cfg.optim.lr_boundaries == (2, 5)
    assert cfg.schemes[1].r == 2.0 and isinstance(cfg.schemes[1].r, float)
    assert [cfg.scheme_k(s) for s in cfg.schemes] == [5, 10, 5, 3, 5]
    assert cfg.target is None


def test_matrix_code_from_csv_path(tmp_path):
    path = tmp_path / "code.csv"
    path.write_text("1,1,0\n0,1,1\n1,0,1\n1,0,0\n0,1,0\n")
    cfg = config_from_dict({"n": 5, "b": 1, "batch_size": 60,
                            "schemes": [{"name": "m", "code": "matrix", "matrix": str(path)}]})
    assert cfg.scheme_k(cfg.schemes[0]) == 3
    bad = {"n": 5, "b": 1, "batch_size": 60,
           "schemes": [{"name": "m", "code": "matrix", "matrix": str(path), "k": 4}]}
    with pytest.raises(ConfigError, match=r"^schemes\[0\]\.k: got 4; the matrix has 3 columns"):
        config_from_dict(bad)


# ---------------------------------------------------------------------------------------------
# Per-scheme attack and b
# ---------------------------------------------------------------------------------------------


def test_scheme_placement_overrides_the_experiment_and_sweeps():
    """schemes[].placement overrides the experiment's (a static field: schemes differing in it form
    separate groups); it is sweepable; an adaptive placement is fine without attack (b = 0)."""
    cfg = config_from_dict({"attack": "omniscient", "b": 3, "schemes": [
        {"name": "mv", "code": "uncoded"},
        {"name": "bern", "code": "bernoulli", "r": 2, "sweep": {"placement": ["uniform", "adaptive", "adaptive_exact"]}},
        {"name": "clean", "code": "uncoded", "attack": "none", "placement": "adaptive"}]})
    from jax_ec.plan import make_schemes
    schemes = make_schemes(cfg, 26325)
    assert [s.static.placement for s in schemes] == ["uniform", "uniform", "adaptive", "adaptive_exact", "adaptive"]
    assert [s.name for s in schemes][1:4] == ["bern[placement=uniform]", "bern[placement=adaptive]",
                                             "bern[placement=adaptive_exact]"]
    assert config_from_dict({"placement": "adaptive", "attack": "reverse",
                             "schemes": [{"name": "clean", "code": "uncoded", "attack": "none"}]})


def test_scheme_attack_and_b():
    cfg, _ = load_config(None, ["schemes.1.b=0", "schemes.2.attack=reverse"])
    no_attack, zero_b, reverse = cfg.schemes
    assert no_attack.attack == "none"
    assert cfg.scheme_b(no_attack) == 0 and cfg.scheme_attack(no_attack) == "none"
    assert cfg.scheme_b(zero_b) == 0 and cfg.scheme_attack(zero_b) == "none"
    assert cfg.scheme_b(reverse) == 5 and cfg.scheme_attack(reverse) == "reverse"
    # attack: none wins over an explicit b.
    s = SchemeConfig(name="x", attack="none", b=3)
    assert cfg.scheme_b(s) == 0 and cfg.scheme_attack(s) == "none"
    # A top-level b = 0 disables the attack everywhere.
    cfg0, _ = load_config(None, ["b=0"])
    assert all(cfg0.scheme_attack(s) == "none" and cfg0.scheme_b(s) == 0 for s in cfg0.schemes)
    # A scheme b override is checked against n.
    message = config_error(["schemes.1.b=15"])
    assert message.startswith("schemes[1].b: got 15"), message


def test_plan_carries_scheme_attack():
    from jax_ec.plan import make_schemes
    cfg, _ = load_config(None, ["schemes.1.b=0"])
    schemes = make_schemes(cfg, cfg.task.n_train)
    assert [(s.attack, s.b, s.static.attack, int(s.params.b)) for s in schemes] == [
        ("none", 0, "none", 0), ("none", 0, "none", 0), ("directional", 5, "directional", 5)]


# ---------------------------------------------------------------------------------------------
# Data-size and data-file errors (before anything compiles)
# ---------------------------------------------------------------------------------------------


def test_make_plan_batch_larger_than_shard():
    from jax_ec.plan import make_schemes
    cfg, _ = load_config(None)
    # 15 shards of 6 samples, each must contribute 15 per step.
    with pytest.raises(ConfigError) as info:
        make_schemes(cfg, num_train=90)
    message = str(info.value)
    assert message.startswith("batch_size: got 225"), message
    assert "k = 15" in message and "6" in message


def test_make_plan_batch_larger_than_training_set():
    from jax_ec.plan import make_schemes
    cfg = config_from_dict({"n": 5, "b": 1, "batch_size": 60, "partitioning": "split",
                            "task": {"name": "synthetic", "num_samples": 50}})
    with pytest.raises(ConfigError, match=r"^batch_size: got 60; larger than the 50 training samples"):
        make_schemes(cfg, num_train=50)
    assert make_schemes(cfg, num_train=120)[1].static.steps_per_epoch == 2


def test_make_schemes_raises_data_size_error_from_task():
    from jax_ec.plan import make_schemes
    from jax_ec.tasks import make_task
    cfg = config_from_dict({"n": 5, "b": 1, "batch_size": 500, "partitioning": "shards",
                            "task": {"name": "synthetic", "num_samples": 100, "num_features": 4, "hidden": [4]}})
    task = make_task(cfg.task, cfg.seed)
    with pytest.raises(ConfigError, match=r"^batch_size: got 500"):
        make_schemes(cfg, task.num_train)


def test_missing_amazon_data_file(tmp_path):
    """make_task (the loader behind a run) raises FileNotFoundError naming the path."""
    from jax_ec.tasks import make_task
    missing = tmp_path / "no_such_dir" / "train.csv"
    with pytest.raises(FileNotFoundError) as info:
        make_task(TaskConfig(name="amazon", data_path=str(missing)))
    assert str(missing) in str(info.value)


def test_missing_amazon_data_file_rejected_by_config(tmp_path):
    missing = tmp_path / "no_such_dir" / "train.csv"
    message = config_error([f"task.data_path={missing}"])
    assert message.startswith(f"task.data_path: got '{missing}'"), message


def test_missing_amazon_data_file_fails_before_compiling(tmp_path, monkeypatch):
    """Even past config validation (file removed after loading the config), run_experiment raises
    the FileNotFoundError before any trainer is built or run."""
    from jax_ec import experiment

    def boom(*args, **kwargs):
        raise AssertionError("reached training before the data file was checked")

    monkeypatch.setattr(experiment, "prepare_group", boom)
    monkeypatch.setattr(experiment, "run_group", boom)
    missing = tmp_path / "missing.csv.gz"
    cfg, _ = load_config(None, ["trials=2"])
    cfg = cfg.model_copy(update=dict(task=cfg.task.model_copy(update=dict(data_path=str(missing)))))  # not re-validated
    with pytest.raises(FileNotFoundError, match="missing.csv.gz"):
        experiment.run_experiment(cfg, tmp_path / "out", progress_bar=False)


# ---------------------------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------------------------


def test_a_sweep_expands_into_named_schemes():
    from jax_ec.config import expand_sweeps
    cfg, _ = load_config(None, ["schemes.2.sweep={b: [1, 3], r: [2, 3.5]}"])
    names = [s.name for s in cfg.expanded_schemes()]
    assert names == ["no_attack", "signsgd_mv", "bernoulli_p2_15[b=1,r=2]", "bernoulli_p2_15[b=1,r=3.5]",
                     "bernoulli_p2_15[b=3,r=2]", "bernoulli_p2_15[b=3,r=3.5]"]
    swept = expand_sweeps(cfg.schemes)[3]
    assert (swept.parent, swept.point) == ("bernoulli_p2_15", (("b", 1), ("r", 3.5)))
    assert (swept.scheme.b, swept.scheme.r, swept.scheme.sweep) == (1, 3.5, None)
    assert cfg.scheme_b(swept.scheme) == 1
    # The sweep survives the round trip through config.yaml.
    assert config_from_dict(config_to_dict(cfg)) == cfg
