"""jax_ec._checks: one ValueError naming the argument, the value and what is allowed."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jax_ec import _checks


@pytest.mark.parametrize("call, message", [
    (lambda: _checks.integer("n", 0, 1), r"^n: got 0; expected an integer >= 1$"),
    (lambda: _checks.integer("b", 5, 0, 4), r"^b: got 5; expected an integer in \[0, 4\]$"),
    (lambda: _checks.integer("k", True, 1), r"^k: got True; expected an integer >= 1$"),
    (lambda: _checks.integer("k", 2.0, 1), r"^k: got 2.0; expected an integer >= 1$"),
    (lambda: _checks.number("lr", float("nan"), 0, low_open=True), r"^lr: got nan; expected a finite number > 0$"),
    (lambda: _checks.probability("p", 1.5), r"^p: got 1.5; expected a probability in \[0, 1\]$"),
    (lambda: _checks.one_of("attack", "nuke", ("none", "reverse")), r"^attack: unknown attack 'nuke'; allowed: none, reverse$"),
    (lambda: _checks.sign("direction", 0), r"^direction: got 0; allowed: 1, -1$"),
    (lambda: _checks.seed("seed", 2 ** 32), r"^seed: got 4294967296; expected an integer >= 0 and < 2\*\*32"),
    (lambda: _checks.prng_key("key", "x"), r"^key: got 'x'; expected a PRNG key"),
])
def test_bad_arguments_name_the_field(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_good_arguments_come_back_canonical():
    assert _checks.integer("n", np.int64(5), 1) == 5 and type(_checks.integer("n", np.int64(5), 1)) is int
    assert _checks.probability("p", np.float32(0.25)) == 0.25
    assert _checks.seed("seed", 2 ** 32 - 1) == 2 ** 32 - 1
    np.testing.assert_array_equal(np.asarray(_checks.prng_key("key", 3)), np.asarray(jax.random.PRNGKey(3)))
