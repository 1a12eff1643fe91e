"""Kernels: one algorithm per module, each exporting ``init``, ``build_kernel`` and
``as_top_level_api`` in the shape of BlackJAX kernels."""
