"""Solvers of the linear models' convex problems: deterministic optimisers driven from the host,
one algorithm per module, each stopped by a certificate that its caller gives (the estimators'
float64 duality gap of docs/theory/convex-erm.md)."""
