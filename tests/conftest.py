"""Test-session setup: a persistent compilation cache, so that programs compiled once (the same
model, shapes and scheme structure appearing in several configs or tests) are reused within the
session instead of recompiled, by this process and by the ``jax-ec`` subprocesses the tests start
(they read the same settings from the environment)."""

from __future__ import annotations

import os
import tempfile

import jax

_CACHE = os.environ.get("JAX_EC_TEST_COMPILATION_CACHE") or tempfile.mkdtemp(prefix="jax_ec_xla_cache_")
os.environ["JAX_EC_TEST_COMPILATION_CACHE"] = _CACHE    # pytest-xdist's workers share the session's cache
_SETTINGS = {"jax_compilation_cache_dir": _CACHE, "jax_persistent_cache_min_compile_time_secs": 0.5,
             "jax_persistent_cache_min_entry_size_bytes": 0}
for _name, _value in _SETTINGS.items():
    jax.config.update(_name, _value)
    os.environ.setdefault(_name.upper(), str(_value))
