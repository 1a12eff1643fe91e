"""Strict JAX settings for the whole suite, as in equinox's tests."""

import os

# Several fake CPU devices, so that sharding and parallel chains are exercised on a laptop.
# This must happen before JAX initialises its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
