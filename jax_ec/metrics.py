"""Evaluation metrics in pure ``jax.numpy`` (jit- and vmap-safe, static shapes)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


def auc(scores: ArrayLike, labels: ArrayLike) -> Array:
    r"""ROC AUC as the normalized Mann–Whitney U statistic, ties counted 1/2.

    With positives :math:`P = \{i : y_i > 0\}` and negatives
    :math:`N = \{j : y_j \le 0\}` (so labels may be {0, 1} or {-1, +1}),

    .. math::

        \mathrm{AUC} = \frac{1}{|P|\,|N|} \sum_{i \in P} \sum_{j \in N}
            \big( [s_j < s_i] + \tfrac12 [s_j = s_i] \big)
          = \frac{\sum_{i \in P} r_i - |P|(|P|+1)/2}{|P|\,|N|},

    where :math:`r_i` is the 1-based rank of :math:`s_i` among all scores,
    tied scores sharing their average rank.  It is evaluated in the first form,
    which avoids the cancellation of the rank-sum form: after sorting, the
    tie group of :math:`s_i` occupies sorted positions ``[lo_i, hi_i)`` (found
    by ``searchsorted`` left/right), so, with ``C`` the running count of
    negatives in sorted order, ``C[lo_i]`` negatives score strictly below
    :math:`s_i` and ``C[hi_i] - C[lo_i]`` tie with it.  Cost is
    :math:`O(n \log n)`.

    Args:
      scores: ``(n,)`` real scores (any monotone transform of the probability,
        e.g. logits); must not contain NaN.
      labels: ``(n,)`` labels; positive iff ``> 0``.

    Returns:
      Scalar AUC in ``[0, 1]``; NaN when either class is absent.
    """
    scores = jnp.asarray(scores)
    positive = jnp.asarray(labels) > 0
    order = jnp.argsort(scores)
    sorted_scores = scores[order]
    neg_before = jnp.concatenate(
        [jnp.zeros(1, jnp.int32), jnp.cumsum(~positive[order], dtype=jnp.int32)]
    )
    lo = jnp.searchsorted(sorted_scores, scores, side="left")
    hi = jnp.searchsorted(sorted_scores, scores, side="right")
    n_neg = neg_before[-1]
    n_pos = scores.shape[0] - n_neg
    # Per-positive fraction of negatives beaten (ties 1/2); mean over positives.
    wins = (2 * neg_before[lo] + (neg_before[hi] - neg_before[lo])) / (2 * n_neg)
    value = jnp.sum(jnp.where(positive, wins, 0.0)) / n_pos
    return jnp.where((n_pos > 0) & (n_neg > 0), value, jnp.nan)


def accuracy(logits: ArrayLike, labels: ArrayLike) -> Array:
    r"""Binary accuracy :math:`\frac1n \sum_i [\,[z_i > 0] = [y_i > 0]\,]`.

    Args:
      logits: ``(n,)`` logits (or any scores thresholded at 0).
      labels: ``(n,)`` labels; positive iff ``> 0`` ({0, 1} or {-1, +1}).

    Returns:
      Scalar fraction of correct predictions.
    """
    return jnp.mean((jnp.asarray(logits) > 0) == (jnp.asarray(labels) > 0))
