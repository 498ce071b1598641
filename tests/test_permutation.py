"""The keyed data-order permutation (jax_ec.permutation): a bijection, equal to a plain-integer
reference, roughly uniform, and what ``Trainer.batch_rows`` uses with ``shuffle``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_ec.config import load_config
from jax_ec.permutation import permute, permute_reference, round_keys
from jax_ec.tasks import make_task
from jax_ec.core import batch_rows
from jax_ec.plan import make_schemes


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 16, 17, 100, *(pytest.param(n, marks=pytest.mark.slow) for n in (1797, 4097))])
def test_permute_is_a_bijection_of_range_n(n):
    for seed in range(5):
        image = np.asarray(permute(jax.random.PRNGKey(seed), n, jnp.arange(n)))
        assert image.dtype == np.int32
        np.testing.assert_array_equal(np.sort(image), np.arange(n))


@pytest.mark.parametrize("n", [2, 7, 64, 1000, 26325])
def test_permute_equals_the_plain_integer_reference(n):
    key = jax.random.PRNGKey(n)
    index = np.unique(np.linspace(0, n - 1, 50).astype(int))
    got = np.asarray(permute(key, n, jnp.asarray(index)))
    keys = np.asarray(round_keys(key))
    np.testing.assert_array_equal(got, [permute_reference(keys, n, i) for i in index])


def test_permute_is_the_same_under_jit_vmap_and_for_any_index_subset():
    key, n = jax.random.PRNGKey(3), 1000
    full = np.asarray(permute(key, n, jnp.arange(n)))
    part = np.asarray(jax.jit(permute, static_argnums=1)(key, n, jnp.arange(100, 340)))
    np.testing.assert_array_equal(part, full[100:340])
    keys = jax.random.split(key, 4)
    batched = np.asarray(jax.vmap(lambda k: permute(k, n, jnp.arange(n)))(keys))
    for i in range(4):
        np.testing.assert_array_equal(batched[i], np.asarray(permute(keys[i], n, jnp.arange(n))))


def test_permute_is_close_to_uniform_over_keys():
    """Over 4000 keys the image of each index is spread evenly over n = 10 values (chi-square),
    and the images of two indices look independent (no value pair is over-represented)."""
    n, draws = 10, 4000
    keys = jax.random.split(jax.random.PRNGKey(0), draws)
    images = np.asarray(jax.vmap(lambda k: permute(k, n, jnp.arange(n)))(keys))  # (draws, n)
    expected = draws / n
    for i in range(n):
        counts = np.bincount(images[:, i], minlength=n)
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 40, (i, counts)  # 9 degrees of freedom: P(chi2 > 40) < 1e-5
    pairs = np.bincount(images[:, 0] * n + images[:, 1], minlength=n * n).reshape(n, n)
    assert np.all(np.diag(pairs) == 0)
    off = pairs[~np.eye(n, dtype=bool)]
    expected_pair = draws / (n * (n - 1))
    assert ((off - expected_pair) ** 2 / expected_pair).sum() < 89 + 6 * np.sqrt(2 * 89)


def test_different_keys_give_different_orders():
    n = 500
    a = np.asarray(permute(jax.random.PRNGKey(0), n, jnp.arange(n)))
    b = np.asarray(permute(jax.random.PRNGKey(1), n, jnp.arange(n)))
    assert (a != b).mean() > 0.9
    assert abs(np.corrcoef(a, np.arange(n))[0, 1]) < 0.2


def test_permute_rejects_n_out_of_range():
    with pytest.raises(ValueError, match="n must be in"):
        permute(jax.random.PRNGKey(0), 0, jnp.arange(1))


@pytest.mark.slow   # an end-to-end comparison of whole runs: `python -m pytest -m slow`
@pytest.mark.parametrize("partitioning", ["split", "shards"])
def test_shuffled_epoch_visits_each_row_at_most_once(partitioning):
    """With shuffle, the steps of one epoch use distinct rows (split: of the whole set; shards: of
    each partition's own shard), and the next epoch uses another order."""
    cfg, _ = load_config(None, ["task.n_train=600", "task.shuffle=true", f"partitioning={partitioning}",
                                "n=5", "b=1", "batch_size=50", "schemes=[{name: s, code: uncoded}]"])
    task = make_task(cfg.task, cfg.seed)
    plan, key = make_schemes(cfg, task.num_train)[0].static, jax.random.PRNGKey(7)
    epochs = [np.stack([np.asarray(batch_rows(plan, task.num_train, key, jnp.int32(e * plan.steps_per_epoch + s)))
                        for s in range(plan.steps_per_epoch)]) for e in range(2)]
    for rows in epochs:  # (steps, k, per_partition)
        flat = rows.reshape(-1)
        assert len(np.unique(flat)) == flat.size and flat.min() >= 0 and flat.max() < task.num_train
        if partitioning == "shards":
            shard = task.num_train // plan.k
            assert np.all(rows // shard == np.arange(plan.k)[None, :, None])
    assert not np.array_equal(epochs[0], epochs[1])
