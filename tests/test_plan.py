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


def test_a_partition_no_worker_holds_is_warned():
    import pytest
    from jax_ec.plan import UnusedDataWarning
    cfg = config_from_dict(dict(BASE, schemes=[dict(name="m", code="matrix",
                                                     matrix=[[1, 0, 0, 1], [1, 0, 0, 1], [0, 0, 0, 1], [1, 0, 0, 0],
                                                             [1, 0, 0, 0]])]))
    with pytest.warns(UnusedDataWarning, match=r"no worker holds partitions \[1, 2\] \(of k = 4\)"):
        make_schemes(cfg, 200)


def test_a_bernoulli_code_likely_to_draw_all_zero_is_warned():
    import warnings

    import pytest
    from jax_ec.plan import UnusedDataWarning
    cfg = config_from_dict(dict(BASE, schemes=[dict(name="thin", code="bernoulli", r=0.1)]))
    with pytest.warns(UnusedDataWarning, match=r"all zero with probability \(1 - p\)\^\(n k\) = 0\.6;"):
        make_schemes(cfg, 200)             # (1 - 0.1/5)^(5 · 5) = 0.603
    for scheme in (dict(name="r2", code="bernoulli", r=2.0), dict(name="thin", code="bernoulli", r=0.1,
                                                                   nonempty_rows=True)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnusedDataWarning)
            make_schemes(config_from_dict(dict(BASE, schemes=[scheme])), 200)


def test_run_lengths_the_device_cannot_count_or_evaluate_are_refused():
    import pytest
    from jax_ec.config import ConfigError
    cfg = config_from_dict(dict(BASE, steps=None, epochs=2 ** 30, schemes=[dict(name="u")]))
    with pytest.raises(ConfigError, match=r"^epochs: got 1073741824; .* more than the 2147483647"):
        make_schemes(cfg, 200)                       # 5 steps per epoch
    cfg = config_from_dict(dict(BASE, eval_every_epochs=1e-12, schemes=[dict(name="u")]))
    with pytest.raises(ConfigError, match=r"^eval_every_epochs: got 1e-12; shorter than one step .* 1/5 = 0\.2"):
        make_schemes(cfg, 200)
    assert make_schemes(config_from_dict(dict(BASE, eval_every_epochs=0.2, schemes=[dict(name="u")])), 200)[0] \
        .eval_steps == (0, 1, 2, 3, 4, 5, 6)
