"""configs/paper/ against docs/paper_configs.md and the authors' cifar10/run.sh and main.py.

The table in docs/paper_configs.md has one row per run.sh line: the config and scheme it became,
the line's flags, and the settings. Each row's settings are derived here from its flags with
main.py's own rules (argument defaults, the choice of the code, the milestones), and checked
against the table's columns and against the YAML config.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jax_ec.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "paper_configs.md"
PAPER = ROOT / "configs" / "paper"
PANELS = ("fig4_n5_b1", "fig4_n9_b2", "fig4_n15_b3", "fig5_n5_b2", "fig5_n9_b3", "fig5_n15_b6", "figA1_n5_b2",
          "figA2_n9_b4", "figA3_n5_b2_reduced", "figA3_n15_b6_reduced", "figA4_resnet50", "figA4_noise",
          "figA4_median")
# main.py's argparse defaults for the flags run.sh leaves out.
MAIN_DEFAULTS = {"network": "ResNet18", "lr": "1e-4", "num_epochs": "100", "deterministic": "False",
                 "redundancy": "1.0", "coord_median": "False", "noisy_gradient": "False", "variance": "0",
                 "attack_type": "reverse", "signed_sum": "False"}


def table_rows() -> list[dict[str, str]]:
    lines = [ln for ln in DOC.read_text().splitlines() if ln.startswith("| `")]
    header = next(ln for ln in DOC.read_text().splitlines() if ln.startswith("| config | panel | scheme"))
    names = [c.strip() for c in header.strip("|").split("|")]
    rows = []
    for line in lines:
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if len(cells) == len(names):
            rows.append(dict(zip(names, cells)))
    return rows


def flags_of(text: str) -> dict[str, str]:
    tokens = text.split()
    assert len(tokens) % 2 == 0 and all(t.startswith("--") for t in tokens[::2]), text
    return {**MAIN_DEFAULTS, **{k[2:]: v for k, v in zip(tokens[::2], tokens[1::2])}}


def expected_from_flags(f: dict[str, str], panel_batch: int) -> dict:
    """What main.py runs for these flags (argparse's type=bool makes any non-empty string True;
    run.sh only ever passes "True")."""
    n, b, batch = int(f["num_nodes"]), int(f["num_Byz_nodes"]), int(f["batch_size"])
    if f["coord_median"] == "True":
        code, r, aggregator = "uncoded", None, "median"          # EncMatrix = identity
    elif f["deterministic"] == "True":
        r_flag = float(f["redundancy"])
        assert r_flag in (1.0, 3.8), "main.py has deterministic codes for r = 1 and 3.8 only"
        code, r, aggregator = ("uncoded" if r_flag == 1.0 else "paper_n5"), None, "vote"
    else:
        code, r, aggregator = "bernoulli", float(f["redundancy"]), "vote"
    return dict(n=n, b=b, batch=batch, rho=batch / panel_batch, code=code, r=r, aggregator=aggregator,
                model={"ResNet18": "resnet18", "ResNet50": "resnet50"}[f["network"]],
                noise_std=float(f["variance"]) if f["noisy_gradient"] == "True" else 0.0,
                epochs=int(f["num_epochs"]), lr=float(f["lr"]), attack=f["attack_type"],
                milestones=(40, 80) if n in (5, 9) else (20, 40, 80))


def test_every_panel_has_a_config_and_rows():
    rows = table_rows()
    assert sorted({r["config"] for r in rows}) == sorted(PANELS)
    assert sorted(p.stem for p in PAPER.glob("*.yaml")) == sorted(PANELS)
    assert len(rows) == sum(len(load_config(PAPER / f"{p}.yaml")[0].schemes) for p in PANELS)


@pytest.mark.parametrize("panel", PANELS)
def test_config_equals_its_run_sh_lines(panel):
    cfg, _ = load_config(PAPER / f"{panel}.yaml")
    rows = [r for r in table_rows() if r["config"] == panel]
    assert [r["scheme"] for r in rows] == [s.name for s in cfg.schemes], "one scheme per run.sh line, in order"
    panel_batch = max(int(flags_of(r["run.sh flags"])["batch_size"]) for r in rows)
    assert cfg.batch_size == panel_batch
    for row in rows:
        want = expected_from_flags(flags_of(row["run.sh flags"]), panel_batch)
        s = next(s for s in cfg.schemes if s.name == row["scheme"])
        where = f"{panel}/{s.name}"
        # The table's columns say what the flags say.
        assert (int(row["n"]), int(row["b"]), int(row["batch"])) == (want["n"], want["b"], want["batch"]), where
        assert float(row["rho"]) == pytest.approx(want["rho"]), where
        assert (row["code"], row["aggregator"], row["network"]) == (want["code"], want["aggregator"],
                                                                    want["model"]), where
        assert (None if row["r"] == "–" else float(row["r"])) == want["r"], where
        assert float(row["noise_std"]) == want["noise_std"], where
        # The config runs what the flags run.
        assert cfg.n == want["n"] and cfg.scheme_b(s) == want["b"], where
        assert cfg.scheme_batch(s) == want["batch"] and s.rho == pytest.approx(want["rho"]), where
        assert s.code == want["code"] and s.r == want["r"] and s.aggregator == want["aggregator"], where
        if s.code == "bernoulli":
            assert s.nonempty_rows, f"{where}: main.py redraws G until no worker is empty"
        assert cfg.task.model == want["model"], where
        noise = cfg.noise_std if s.noise_std is None else s.noise_std
        assert noise == want["noise_std"], where
        if noise > 0:
            assert cfg.scheme_noise_model(s) == "per_copy", f"{where}: main.py draws noise per worker copy"
        assert cfg.scheme_attack(s) == (want["attack"] if want["b"] > 0 else "none"), where
        assert cfg.epochs == want["epochs"], where
        assert (s.lr if s.lr is not None else cfg.optim.lr) == want["lr"], f"{where}: FGM keeps main.py's optimizer"
        assert cfg.optim.lr_boundaries == want["milestones"], where
    # main.py's fixed settings, the same in every panel.
    assert (cfg.optim.lr_decay, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.worker_momentum) == \
        (0.1, 0.9, 1e-4, 0.0)
    assert (cfg.task.name, cfg.task.augment, cfg.task.shuffle, cfg.partitioning) == ("cifar10", True, True, "split")
    assert cfg.placement == "uniform" and cfg.eval_every_epochs == 1 and cfg.steps is None
    assert cfg.task.width is None, "the paper's width-64 networks"


def test_reduced_minibatch_schemes_take_twice_the_steps_per_epoch():
    """run.sh's smaller --batch_size: ρ = 0.5 runs round(N / (ρB)) steps per epoch, with its
    milestones (epochs) at those steps. Checked on the shipped digits with a panel's schemes."""
    from jax_ec.plan import make_schemes
    from jax_ec.tasks import make_task
    cfg, _ = load_config(PAPER / "figA3_n15_b6_reduced.yaml", ["task.name=digits", "task.model=mlp",
                                                                   "task.augment=false"])
    task = make_task(cfg.task)
    schemes = {s.name: s for s in make_schemes(cfg, task.num_train)}
    full, half = schemes["signsgd_mv"], schemes["bernoulli_r3_rho0.5"]
    assert (full.static.batch, half.static.batch) == (240, 120)
    assert half.static.steps_per_epoch == round(task.num_train / 120)
    assert full.static.steps_per_epoch == round(task.num_train / 240)
    assert half.static.steps_per_epoch == 2 * full.static.steps_per_epoch
    assert half.params.lr_boundaries.tolist() == [e * half.static.steps_per_epoch for e in (20, 40, 80)]
    assert half.total_steps == 100 * half.static.steps_per_epoch
