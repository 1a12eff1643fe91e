"""The dual point of the linear models' certificate: ``α`` moved onto the intercept's constraint
``Σ_i α_i = 0`` (docs/theory/convex-erm.md#the-certificate), shared by the estimators and the
coordinate-descent solver."""

from __future__ import annotations


def feasible(xp, loss_name: str, alpha, y):
    """``α`` moved onto ``Σ_i α_i = 0`` (the intercept's constraint), in the array namespace
    ``xp`` (``jax.numpy`` or ``numpy``): centred for the squared loss, the larger class sum
    scaled down to the smaller for the margin losses (which keeps every ``y_i α_i`` in
    ``[0, 1]``).

    Examples
    --------
    >>> import numpy as np
    >>> feasible(np, "squared", np.array([1.0, 3.0]), np.zeros(2)).tolist()
    [-1.0, 1.0]
    >>> feasible(np, "logistic", np.array([0.5, -0.25]), np.array([1.0, -1.0])).tolist()
    [0.25, -0.25]
    """
    if loss_name == "squared":
        return alpha - alpha.mean()
    positive = y > 0
    up = xp.sum(xp.where(positive, alpha, 0))
    down = -xp.sum(xp.where(positive, 0, alpha))
    common = xp.minimum(up, down)
    balance = xp.where(
        positive, common / xp.where(up > 0, up, 1), common / xp.where(down > 0, down, 1)
    )
    return alpha * balance
