"""Test-session setup: a persistent compilation cache, so that programs compiled once (the same
model, shapes and scheme structure appearing in several configs or tests) are reused within the
session instead of recompiled."""

from __future__ import annotations

import os
import tempfile

import jax

_CACHE = os.environ.get("JAX_EC_TEST_COMPILATION_CACHE") or tempfile.mkdtemp(prefix="jax_ec_xla_cache_")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
