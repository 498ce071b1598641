"""Tests for jax_ec.codes (allocation matrices) and the Byzantine placements of jax_ec.attacks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_ec.attacks import (PLACEMENTS, byzantine_mask, most_loaded_placement,
                            uniform_placement)
from jax_ec.codes import (bernoulli, draw_bernoulli, from_matrix, load_code, loads,
                          paper_code_n5, redundancy, uncoded, validate_allocation)
from reference import reference_placement_most_loaded

# ---------------------------------------------------------------------------------------------
# Codes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 4, 15])
def test_uncoded_is_identity(n):
    G = uncoded(n)
    np.testing.assert_array_equal(G, np.eye(n))
    assert G.dtype == np.int8
    assert redundancy(G) == 1.0
    np.testing.assert_array_equal(loads(G), np.ones(n))


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "3"])
def test_uncoded_rejects_bad_n(bad):
    with pytest.raises(ValueError, match=r"^n\b"):
        uncoded(bad)


def test_paper_code_n5():
    G = paper_code_n5()
    assert G.shape == (5, 5)
    assert redundancy(G) == pytest.approx(3.8)
    np.testing.assert_array_equal(loads(G), [1, 3, 5, 5, 5])
    validate_allocation(G, n=5, k=5)


def test_bernoulli_is_seed_reproducible_and_shaped():
    a = bernoulli(3, 7, 2.0)
    b = bernoulli(3, 7, 2.0)
    assert a.shape == (7, 7) and a.dtype == np.int8
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0, 1}
    assert bernoulli(3, 6, 2.0, k=11).shape == (6, 11)
    draws = [bernoulli(s, 7, 2.0) for s in range(4)]
    assert any(not np.array_equal(draws[0], d) for d in draws[1:])


def test_bernoulli_matches_draw_bernoulli():
    G = bernoulli(5, 6, 1.5, k=4)
    H = draw_bernoulli(jax.random.PRNGKey(5), 6, 4, 1.5 / 6)
    np.testing.assert_array_equal(G, np.asarray(H))


@pytest.mark.parametrize("n, k, r", [(200, 200, 20.0), (100, 300, 10.0), (50, 20, 5.0)])
def test_bernoulli_redundancy_of_large_draw(n, k, r):
    """ones ~ Binomial(n k, p) with p = r/n, so the redundancy has mean k p = k r / n."""
    p = r / n
    G = bernoulli(0, n, r, k=k)
    mean_ones = n * k * p
    std_ones = np.sqrt(n * k * p * (1 - p))
    assert abs(G.sum() - mean_ones) < 5 * std_ones
    assert redundancy(G) == pytest.approx(k * r / n, abs=5 * std_ones / n)


def test_bernoulli_full_redundancy_is_all_ones():
    np.testing.assert_array_equal(bernoulli(0, 4, 4.0, k=6), np.ones((4, 6)))


def test_nonempty_rows_gives_no_empty_row():
    n, k, p = 8, 8, 0.1  # P(a given row is empty) = 0.9^8 ≈ 0.43
    keys = jax.random.split(jax.random.PRNGKey(0), 300)
    plain = jax.jit(jax.vmap(lambda key: draw_bernoulli(key, n, k, p)))(keys)
    assert np.any(np.asarray(plain).sum(axis=2) == 0)  # without the option, empty rows occur
    full = jax.jit(jax.vmap(lambda key: draw_bernoulli(key, n, k, p, nonempty_rows=True)))(keys)
    assert np.all(np.asarray(full).sum(axis=2) >= 1)
    for seed in range(3):  # the host-side API too (each call compiles its while_loop)
        G = bernoulli(seed, n, n * p, nonempty_rows=True)
        assert np.all(G.sum(axis=1) >= 1)


@pytest.mark.parametrize("nonempty_rows", [False, True])
def test_draw_bernoulli_vmap_equals_per_key(nonempty_rows):
    n, k, p = 6, 5, 0.2
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    batched = np.asarray(jax.vmap(lambda key: draw_bernoulli(key, n, k, p, nonempty_rows))(keys))
    for t in range(len(keys)):
        np.testing.assert_array_equal(batched[t], np.asarray(draw_bernoulli(keys[t], n, k, p, nonempty_rows)))


def test_draw_bernoulli_traced_p():
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    ps = jnp.asarray([0.0, 0.5, 1.0])
    Gs = np.asarray(jax.vmap(lambda key, p: draw_bernoulli(key, 4, 6, p))(keys, ps))
    assert Gs[0].sum() == 0 and Gs[2].sum() == 24


@pytest.mark.parametrize("r", [0, 0.0, -1.0, 5.5, 100, float("nan"), float("inf")])
def test_bernoulli_rejects_r_outside_range(r):
    with pytest.raises(ValueError, match=r"^r\b"):
        bernoulli(0, 5, r)


@pytest.mark.parametrize("seed", [2 ** 32, -1, 99999999999999999999, 1.0, "0", None])
def test_bernoulli_seed_outside_32_bits_is_refused_like_the_config_seed(seed):
    from jax_ec import _checks
    with pytest.raises(ValueError) as exc:
        bernoulli(seed, 15, 2)
    with pytest.raises(ValueError) as config_exc:
        _checks.seed("seed", seed)
    assert str(exc.value) == str(config_exc.value) and str(exc.value).startswith("seed: got ")
    assert not np.array_equal(bernoulli(2 ** 32 - 1, 15, 2), bernoulli(0, 15, 2))


def test_bernoulli_refuses_unbounded_redraws_and_non_boolean_flags():
    with pytest.raises(ValueError, match=r"^nonempty_rows: .*redraws"):
        bernoulli(0, 1000, 0.001, nonempty_rows=True)
    with pytest.raises(ValueError, match=r"^nonempty_rows: got 'yes'; expected True or False"):
        bernoulli(0, 5, 2, nonempty_rows="yes")
    assert (bernoulli(0, 6, 2, nonempty_rows=True).sum(axis=1) > 0).all()


@pytest.mark.parametrize("call, name", [(lambda: uncoded(2 ** 15), "n"), (lambda: bernoulli(0, 2 ** 15, 2), "n"),
                                        (lambda: bernoulli(0, 4, 2, k=2 ** 27), "n, k")])
def test_dense_matrices_beyond_the_limit_are_refused_before_allocating(call, name):
    with pytest.raises(ValueError, match=rf"^{name}: an n × k = .* entries; expected at most 2\*\*28"):
        call()


def test_load_code_messages_name_the_file_and_line(tmp_path):
    ragged = _write(tmp_path / "ragged.csv", "# header\n1,0,1\n\n1,1\n")
    with pytest.raises(ValueError, match=r"^code file '.*ragged.csv', line 4: has 2 entries but line 2 has 3"):
        load_code(ragged)
    words = _write(tmp_path / "words.csv", "1,0,1\n1,x,0\n")
    with pytest.raises(ValueError, match=r"^code file '.*words.csv', line 2: 'x' is not a number"):
        load_code(words)
    with pytest.raises(ValueError, match=r"^code file '.*empty.csv': holds no rows"):
        load_code(_write(tmp_path / "empty.csv", "# nothing\n"))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ValueError, match=r"^code file '.*binary.csv': is not a text file"):
        load_code(binary)
    with pytest.raises(ValueError, match=r"^code file '.*': is a folder"):
        load_code(tmp_path)
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([[1, 0], [0, 1]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"^code file '.*pickled.npy': holds a pickled object array.*allow_pickle=False"):
        load_code(pickled)
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(b"\x93NUMPY")
    with pytest.raises(ValueError, match=r"^code file '.*truncated.npy': "):
        load_code(truncated)
    with pytest.raises(ValueError, match=r"^path: got 3"):
        load_code(3)


@pytest.mark.parametrize("G, message", [(None, r"^G: got None"), ("abc", r"^G: got 'abc'"),
                                        ([[1, 0], [1]], r"^G: got .*not a rectangular array"),
                                        (np.ones((2, 2), complex), r"^G: got .*complex")])
def test_validate_allocation_names_wrong_types(G, message):
    with pytest.raises(ValueError, match=message):
        validate_allocation(G)
    with pytest.raises(ValueError, match=r"^n: got '2'"):
        validate_allocation(np.eye(2), n="2")


@pytest.mark.parametrize("sep", [",", " ", "\t", ", "])
def test_load_code_csv(tmp_path, sep):
    G = paper_code_n5()
    path = tmp_path / "code.csv"
    lines = ["# a comment line"] + [sep.join(str(x) for x in row) for row in G] + [""]
    path.write_text("\n".join(lines))
    loaded = load_code(path)
    np.testing.assert_array_equal(loaded, G)
    assert loaded.dtype == np.int8
    np.testing.assert_array_equal(load_code(str(path), n=5, k=5), G)


def test_load_code_npy(tmp_path):
    G = bernoulli(1, 6, 2.0, k=9)
    path = tmp_path / "code.npy"
    np.save(path, G.astype(np.float64))
    np.testing.assert_array_equal(load_code(path), G)


def test_load_code_missing_file_names_path(tmp_path):
    path = tmp_path / "nowhere" / "code.csv"
    with pytest.raises(FileNotFoundError) as exc:
        load_code(path)
    assert str(path) in str(exc.value)


def test_load_code_bad_contents(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,0,1\n1,1\n")
    with pytest.raises(ValueError, match="ragged.csv"):
        load_code(ragged)
    words = tmp_path / "words.csv"
    words.write_text("1,0,x\n1,1,0\n")
    with pytest.raises(ValueError, match="words.csv"):
        load_code(words)
    two = tmp_path / "two.csv"
    two.write_text("1,0,2\n1,1,0\n")
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        load_code(two)
    with pytest.raises(ValueError, match="n = 3"):
        load_code(_write(tmp_path / "ok.csv", "1,0\n0,1\n"), n=3)


def _write(path, text):
    path.write_text(text)
    return path


def test_validate_allocation_errors():
    with pytest.raises(ValueError, match=r"entry \[1, 2\] is \S*2"):
        validate_allocation([[0, 1, 0], [1, 0, 2]])
    with pytest.raises(ValueError, match=r"entry \[0, 0\]"):
        validate_allocation([[0.5, 1], [1, 0]])
    with pytest.raises(ValueError, match=r"entry \[0, 1\]"):
        validate_allocation([[1, -1], [1, 0]])
    with pytest.raises(ValueError, match="^G"):
        validate_allocation([[1, 0, 1], [1, 0]])  # ragged
    with pytest.raises(ValueError, match="^G"):
        validate_allocation([1, 0, 1])  # 1-D
    with pytest.raises(ValueError, match="^G"):
        validate_allocation(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="^G"):
        validate_allocation([["1", "0"]])
    with pytest.raises(ValueError, match="n = 4"):
        validate_allocation(np.eye(3), n=4)
    with pytest.raises(ValueError, match="k = 2"):
        validate_allocation(np.eye(3), k=2)
    with pytest.raises(ValueError, match="^my_code"):
        validate_allocation([[3]], name="my_code")


def test_validate_allocation_accepts_bools_and_floats():
    out = validate_allocation(np.array([[True, False], [False, True]]), n=2, k=2)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, np.eye(2))
    np.testing.assert_array_equal(from_matrix([[1.0, 0.0, 1.0]]), [[1, 0, 1]])


# ---------------------------------------------------------------------------------------------
# Byzantine placement
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, b", [(10, 3), (15, 5), (4, 0), (4, 4)])
def test_uniform_placement_picks_exactly_b(n, b):
    keys = jax.random.split(jax.random.PRNGKey(0), 500)
    masks = np.asarray(jax.jit(jax.vmap(lambda key: uniform_placement(key, n, b)))(keys))
    assert masks.shape == (500, n) and masks.dtype == bool
    assert np.all(masks.sum(axis=1) == b)  # a boolean mask: distinct by construction


def test_uniform_placement_is_uniform():
    n, b, T = 10, 3, 4000
    keys = jax.random.split(jax.random.PRNGKey(7), T)
    masks = np.asarray(jax.jit(jax.vmap(lambda key: uniform_placement(key, n, b)))(keys))
    freq = masks.mean(axis=0)
    # std of each frequency ≈ sqrt(0.3·0.7/4000) ≈ 0.007
    np.testing.assert_allclose(freq, b / n, atol=0.04)
    # every b-subset pattern varies: not always the same set
    assert len({tuple(m) for m in masks[:50]}) > 10


def test_uniform_placement_traced_b():
    key = jax.random.PRNGKey(3)
    bs = jnp.arange(6)
    masks = np.asarray(jax.vmap(lambda b: uniform_placement(key, 5, b))(bs))
    np.testing.assert_array_equal(masks.sum(axis=1), [0, 1, 2, 3, 4, 5])


def test_most_loaded_matches_reference():
    rng = np.random.default_rng(0)
    for trial in range(60):
        n, k = int(rng.integers(1, 9)), int(rng.integers(1, 6))
        G = (rng.random((n, k)) < rng.choice([0.2, 0.5, 0.8])).astype(np.int8)  # many equal loads
        b = int(rng.integers(0, n + 1))
        got = np.asarray(most_loaded_placement(G, b))
        np.testing.assert_array_equal(got, reference_placement_most_loaded(G, b),
                                      err_msg=f"G={G} b={b}")


def test_most_loaded_ties_go_to_lower_index():
    G = np.array([[1, 0], [1, 1], [0, 1], [1, 1], [1, 0]])
    np.testing.assert_array_equal(np.asarray(most_loaded_placement(G, 1)), [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(most_loaded_placement(G, 3)), [1, 1, 0, 1, 0])
    np.testing.assert_array_equal(np.asarray(most_loaded_placement(paper_code_n5(), 1)), [0, 0, 1, 0, 0])


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.float32, bool, np.uint8])
def test_most_loaded_any_dtype(dtype):
    # uint8 once wrapped around when the load was negated and picked the least-loaded worker.
    G = np.array([[0, 0], [1, 0], [1, 1]], dtype=dtype)
    np.testing.assert_array_equal(np.asarray(most_loaded_placement(G, 1)), [0, 0, 1])


def test_byzantine_mask_dispatch_and_unknown_placement():
    G = jnp.asarray(paper_code_n5())
    key = jax.random.PRNGKey(4)
    np.testing.assert_array_equal(np.asarray(byzantine_mask("most_loaded", key, G, 2)),
                                  reference_placement_most_loaded(paper_code_n5(), 2))
    np.testing.assert_array_equal(np.asarray(byzantine_mask("uniform", key, G, 2)),
                                  np.asarray(uniform_placement(key, 5, 2)))
    assert int(np.asarray(byzantine_mask("per_step", key, G, 2)).sum()) == 2
    assert set(PLACEMENTS) == {"uniform", "most_loaded", "per_step", "adaptive", "adaptive_exact"}
    for adaptive in ("adaptive", "adaptive_exact"):   # chosen at every step (jax_ec.adaptive): no set before
        assert not np.asarray(byzantine_mask(adaptive, key, G, 2)).any()
    with pytest.raises(ValueError, match="^placement.*most_loaded"):
        byzantine_mask("lightest", key, G, 1)
