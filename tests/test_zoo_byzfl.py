"""jax_ec's robust aggregators and real-valued attacks against ByzFL's outputs (a committed fixture).

``tests/fixtures/byzfl/make_fixture.py`` recorded ByzFL 0.0.11's outputs (float64, on float32-valued
inputs) for (n, d, f) ∈ {7, 15} × {5, 50} × {1, 3}; the first f rows stand for the Byzantine
workers. jax_ec computes in float32: every output agrees within ``rtol = atol = 1e-5`` (the largest
deviation is about 2e-6, IPM at ε = 100), and the selections (median values, the Krum row, the
mimicked row) exactly. ByzFL's attacks return one Byzantine vector from the honest vectors; jax_ec's
return every worker's message, of which the Byzantine rows count: each is compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jax_ec.aggregators import NNM_AGGREGATORS, aggregate, centered_clipping, nnm
from jax_ec.attacks import alie_z, real_attack_messages

HERE = Path(__file__).resolve().parent / "fixtures" / "byzfl"
META = json.loads((HERE / "cases.json").read_text())
CASES = META["cases"]
RTOL = ATOL = 1e-5
EXACT = ("median", "krum")          # a selected value or row: bit for bit
AGGREGATORS = ("mean", "median", "trimmed_mean", "geometric_median", "krum", "multi_krum", "centered_clipping",
               *NNM_AGGREGATORS)


@pytest.fixture(scope="module")
def outputs():
    with np.load(HERE / "byzfl_outputs.npz") as z:
        return dict(z)


def test_fixture_is_small_and_names_its_byzfl_version():
    assert META["byzfl_version"] == "0.0.11"
    assert (HERE / "byzfl_outputs.npz").stat().st_size < 200_000
    assert {(c["n"], c["d"], c["f"]) for c in CASES} == {(n, d, f) for n in (7, 15) for d in (5, 50) for f in (1, 3)}


def _check(got, want, name, case):
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, (name, case["key"])
    if name in EXACT:
        np.testing.assert_array_equal(got, want, err_msg=f"{name} {case}")
    else:
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=f"{name} {case}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c['n']}_d{c['d']}_f{c['f']}")
def test_aggregators_match_byzfl(case, outputs):
    key, f = case["key"], case["f"]
    M = jnp.asarray(outputs[f"{key}/M"])
    for name in AGGREGATORS:
        _check(aggregate(name, M, f=f), outputs[f"{key}/{name}"], name, case)
    _check(nnm(M, f), outputs[f"{key}/nnm"], "nnm", case)
    # ByzFL's CenteredClipping from a given center, and with a radius small enough to clip.
    _check(aggregate("centered_clipping", M, center=jnp.asarray(outputs[f"{key}/center"])),
           outputs[f"{key}/centered_clipping_center"], "centered_clipping", case)
    _check(centered_clipping(M, tau=1.0), outputs[f"{key}/centered_clipping_tau1"], "centered_clipping", case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c['n']}_d{c['d']}_f{c['f']}")
def test_attacks_match_byzfl(case, outputs):
    key, n, f = case["key"], case["n"], case["f"]
    M = jnp.asarray(outputs[f"{key}/M"])
    byzantine = jnp.arange(n) < f
    grads = jnp.zeros((1, M.shape[1]))      # unused by these attacks
    assert float(alie_z(n, f)) == pytest.approx(case["alie_z"], abs=1e-6)
    runs = {"sign_flip": ("sign_flip", None), "alie": ("alie", None), "mimic": ("mimic", None),
            **{f"ipm_{s:g}": ("ipm", s) for s in META["ipm_scales"]}}
    for name, (attack, scale) in runs.items():
        sent = np.asarray(real_attack_messages(attack, M, grads, None, byzantine=byzantine, scale=scale))
        want = outputs[f"{key}/attack/{name}"]
        for i in range(f):
            if attack == "mimic":
                np.testing.assert_array_equal(sent[i], want, err_msg=f"{name} {case}")
            else:
                np.testing.assert_allclose(sent[i], want, rtol=RTOL, atol=ATOL, err_msg=f"{name} {case}")
