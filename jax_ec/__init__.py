"""jax_ec: a JAX-accelerated, vectorized simulator of Election Coding.

Election coding (Sohn, Han, Choi, Moon; NeurIPS 2020) protects SignSGD with majority vote against
Byzantine workers by giving each worker several data partitions through an allocation matrix G
(n workers × k partitions) and letting it send the majority of its partitions' gradient signs.

Public API::

    G = jax_ec.bernoulli(seed=0, n=15, r=2)          # allocation matrix, int8 (n, k)
    jax_ec.redundancy(G)                             # mean partitions per worker
    v = jax_ec.elect(G, partition_grads, byzantine, attack="reverse")   # vote in {-1, 0, +1}^d
    jax_ec.verify(jax_ec.deterministic(15, 3), 3).tolerant               # exact perfect tolerance
"""

from .analysis import deterministic, max_tolerance, min_redundancy, replay, verify
from .attacks import ATTACKS, PLACEMENTS
from .codes import (bernoulli, draco, draw_bernoulli, from_matrix, load_code, loads, paper_code_n5,
                    redundancy, uncoded, validate_allocation)
from .config import ConfigError, ExperimentConfig, SchemeConfig, config_from_dict, load_config
from .election import elect, election, global_vote, local_votes, partition_signs

__version__ = "0.1.0"

__all__ = [
    "ATTACKS", "PLACEMENTS", "ConfigError", "deterministic", "draco", "max_tolerance", "min_redundancy",
    "replay", "verify", "ExperimentConfig", "SchemeConfig", "bernoulli",
    "config_from_dict", "draw_bernoulli", "elect", "election", "from_matrix", "global_vote",
    "load_code", "load_config", "loads", "local_votes", "paper_code_n5", "partition_signs",
    "redundancy", "run_experiment", "make_train", "make_task", "uncoded", "validate_allocation",
]


def __getattr__(name: str):
    # The runner and trainer pull in optax/flax/matplotlib: import them on first use only.
    if name == "run_experiment":
        from .experiment import run_experiment
        return run_experiment
    if name == "make_train":
        from .core import make_train
        return make_train
    if name == "make_task":
        from .tasks import make_task
        return make_task
    raise AttributeError(f"module 'jax_ec' has no attribute {name!r}")
