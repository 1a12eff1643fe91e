"""Solvers of the linear models' convex problems, each in its own module, each stopped by the
certified duality gap of docs/theory/convex-erm.md."""
