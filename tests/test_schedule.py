"""jax_ec.schedule: the step size as data, against plain loops."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jax_ec.schedule import NO_BOUNDARY, lr_at, lr_sum, schedule_arrays


def test_values_boundaries_and_padding():
    values, bounds = schedule_arrays(1e-3, 0.1, (12, 36), length=4)
    assert values.dtype == np.float32 and bounds.dtype == np.int32
    np.testing.assert_array_equal(values, np.float32([1e-3, 1e-3 * 0.1, 1e-3 * 0.01, 1e-3 * 0.001, 1e-3 * 1e-4]))
    assert bounds.tolist() == [12, 36, NO_BOUNDARY, NO_BOUNDARY]
    with pytest.raises(ValueError, match="^length"):
        schedule_arrays(1e-3, 0.1, (1, 2, 3), length=2)


@pytest.mark.parametrize("length", [None, 5])
def test_lr_at_and_lr_sum_match_loops(length):
    values, bounds = schedule_arrays(1e-3, 0.1, (12, 36), length)
    steps = np.arange(50)
    lrs = np.asarray(lr_at(values, bounds, jnp.asarray(steps, jnp.int32)))
    want = [1e-3 * 0.1 ** sum(t >= b for b in (12, 36)) for t in steps]
    np.testing.assert_allclose(lrs, want, rtol=1e-6)
    for t0, t1 in [(0, 0), (0, 12), (5, 40), (13, 14), (36, 50), (40, 20)]:
        total = float(lr_sum(values, bounds, jnp.int32(t0), jnp.int32(t1)))
        np.testing.assert_allclose(total, sum(lrs[t0:t1]), rtol=1e-5)
    # The padded boundaries (never reached) change nothing: the same bits as the exact length.
    exact = schedule_arrays(1e-3, 0.1, (12, 36))
    assert float(lr_sum(*exact, jnp.int32(3), jnp.int32(47))) == float(lr_sum(values, bounds, jnp.int32(3),
                                                                                 jnp.int32(47)))
