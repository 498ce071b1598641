"""jax_ec.plan: schemes resolved from a config, their groups, the evaluation schedule, the clock."""

from __future__ import annotations

import numpy as np

from jax_ec.config import config_from_dict
from jax_ec.plan import eval_schedule, group_schemes, iteration_time, make_schemes, stack_params

BASE = dict(n=5, b=1, attack="reverse", partitioning="split", batch_size=40, steps=6, eval_every=2,
            optim=dict(lr=0.1, lr_boundaries=[], worker_momentum=0.0),
            task=dict(name="synthetic", num_samples=200, num_features=6, num_classes=3, hidden=[8]))


def test_groups_follow_the_static_shape():
    cfg = config_from_dict(dict(BASE, schemes=[
        dict(name="clean", attack="none"),                               # joins the reverse group
        dict(name="mv"), dict(name="bern", code="bernoulli", r=2.0),
        dict(name="k10", code="bernoulli", r=2.0, k=10),                # another shape: k
        dict(name="median", aggregator="median"),                       # another aggregator
        dict(name="noisy", code="bernoulli", r=2.0, noise_std=0.1),     # noise changes the program
        dict(name="rho", code="bernoulli", r=2.0, rho=0.5),             # another minibatch
        dict(name="omni", attack="omniscient")]))                       # another attack
    groups = group_schemes(make_schemes(cfg, 200))
    assert [g.names for g in groups] == [("clean", "mv", "bern"), ("k10",), ("median",), ("noisy",), ("rho",),
                                         ("omni",)]
    assert groups[0].static.attack == "reverse"
    assert all(s.static == groups[0].static for s in groups[0].schemes)
    params = stack_params(groups[0].schemes)
    assert params.b.tolist() == [0, 1, 1] and params.bernoulli.tolist() == [False, False, True]
    np.testing.assert_allclose(params.p, [0.0, 0.0, 0.4])
    np.testing.assert_array_equal(params.G[1], np.eye(5))


def test_eval_schedule():
    assert eval_schedule(10, 5, 4, None) == (0, 4, 8, 10)
    assert eval_schedule(30, 12, 99, 1.0) == (0, 12, 24, 30)
    assert eval_schedule(20, 5, 99, 0.5) == (0, 3, 5, 8, 10, 13, 15, 18, 20)   # m · 2.5 rounded half up


def test_iteration_time_is_the_busiest_worker_plus_communication():
    cfg = config_from_dict(dict(BASE, time=dict(t_partition=2.0, bandwidth=32.0),
                                schemes=[dict(name="s", code="bernoulli", r=2.0, rho=0.5)]))
    (scheme,) = make_schemes(cfg, 200)
    G = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0] * 5, [1] * 5, [0, 0, 0, 0, 1]])
    assert iteration_time(scheme, G, 64) == 5 * 0.5 * 2.0 + 64 / 32.0
