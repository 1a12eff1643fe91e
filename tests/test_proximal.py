"""Proximal maps against their defining minimisation, conjugates against their supremum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from mflangevin import proximal
from mflangevin.proximal import Box, CompositeObjective, ElasticNet

RNG = np.random.default_rng(0)
POINTS = RNG.normal(scale=3.0, size=12)


def brute_prox(penalty_1d, v, step, lo=-50.0, hi=50.0):
    """argmin_x r(x) + (x − v)² / (2η), coordinate by coordinate (the penalties are separable)."""
    out = []
    for vi in v:
        result = minimize_scalar(
            lambda x, vi=vi: penalty_1d(x) + (x - vi) ** 2 / (2 * step),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-12},
        )
        out.append(result.x)
    return np.array(out)


@pytest.mark.parametrize("l1,l2,step", [(0.7, 0.0, 0.5), (0.0, 1.3, 0.8), (0.4, 2.0, 1.5)])
def test_elastic_net_prox_is_the_argmin(l1, l2, step):
    with jax.enable_x64(True):
        v = jnp.asarray(POINTS)
        got = np.asarray(ElasticNet(l1, l2).prox(v, step))
        expected = brute_prox(lambda x: l1 * abs(x) + 0.5 * l2 * x**2, POINTS, step)
        np.testing.assert_allclose(got, expected, atol=1e-8)
        # The named maps agree with the penalty's.
        np.testing.assert_allclose(
            np.asarray(proximal.prox_elastic_net(v, step, l1, l2)), got, atol=0
        )
        if l2 == 0:
            np.testing.assert_allclose(np.asarray(proximal.prox_l1(v, step, l1)), got, atol=0)
        if l1 == 0:
            np.testing.assert_allclose(np.asarray(proximal.prox_l2(v, step, l2)), got, atol=1e-15)


def test_box_prox_is_the_argmin_within_the_box():
    lower, upper = -1.0, 2.0
    got = np.asarray(Box(lower, upper).prox(jnp.asarray(POINTS, jnp.float32), 0.3))
    expected = brute_prox(lambda x: 0.0, POINTS, 0.3, lo=lower, hi=upper)
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("l1,l2", [(0.7, 0.5), (0.0, 1.3)])
def test_elastic_net_conjugate_is_the_supremum(l1, l2):
    with jax.enable_x64(True):
        for u in POINTS[:6]:
            best = minimize_scalar(
                lambda x, u=u: -(u * x - l1 * abs(x) - 0.5 * l2 * x**2),
                bounds=(-100, 100),
                method="bounded",
                options={"xatol": 1e-12},
            )
            got = float(ElasticNet(l1, l2).conjugate(jnp.array([u])))
            assert got == pytest.approx(-best.fun, abs=1e-9)


def test_l1_conjugate_is_the_indicator_of_the_dual_ball():
    penalty = ElasticNet(l1=1.0)
    assert float(penalty.conjugate(jnp.array([0.5, -1.0]))) == 0.0
    assert float(penalty.conjugate(jnp.array([1.0 + 1e-7]))) == 0.0  # within round-off
    assert float(penalty.conjugate(jnp.array([0.5, -1.1]))) == np.inf


def test_box_conjugate_is_the_support_function():
    box = Box(lower=jnp.array([-1.0, 0.0]), upper=jnp.array([2.0, 3.0]))
    u = jnp.array([-2.0, 1.5])
    assert float(box.conjugate(u)) == pytest.approx(2.0 + 4.5)
    assert float(box.value(jnp.array([0.0, 3.0]))) == 0.0
    assert float(box.value(jnp.array([0.0, 3.5]))) == np.inf
    assert float(Box(lower=0.0).conjugate(jnp.array([1.0]))) == np.inf


def test_maps_act_leaf_by_leaf_with_per_leaf_parameters():
    v = {"a": jnp.array([3.0, -3.0]), "b": jnp.array(0.5)}
    out = proximal.prox_l1(v, 1.0, {"a": 1.0, "b": 1.0})
    assert out["a"].tolist() == [2.0, -2.0] and float(out["b"]) == 0.0
    clipped = proximal.prox_box(v, {"a": jnp.array([0.0, -1.0]), "b": 0.0}, 1.0)
    assert clipped["a"].tolist() == [1.0, -1.0] and float(clipped["b"]) == 0.5
    assert float(proximal.soft_threshold(jnp.array(-0.5), 1.0)) == 0.0


def test_separable_penalties_over_a_parameter_pytree():
    penalty = {"coef": ElasticNet(l1=1.0, l2=2.0), "bounded": Box(0.0, 1.0), "free": ElasticNet()}
    x = {"coef": jnp.array([2.0, -1.0]), "bounded": jnp.array([1.5]), "free": jnp.array(7.0)}
    out = proximal.prox(penalty, x, 0.5)
    np.testing.assert_allclose(out["coef"], [0.75, -0.25])
    assert out["bounded"].tolist() == [1.0] and float(out["free"]) == 7.0
    inside = {**x, "bounded": jnp.array([0.5])}
    assert float(proximal.value(penalty, inside)) == pytest.approx(3.0 + 5.0)
    assert float(proximal.strong_convexity(penalty)) == 0.0
    assert float(proximal.strong_convexity(ElasticNet(l2=0.3))) == pytest.approx(0.3)
    u = {"coef": jnp.array([3.0, 0.0]), "bounded": jnp.array([-1.0]), "free": jnp.array(0.0)}
    assert float(proximal.conjugate(penalty, u)) == pytest.approx(1.0)


def test_penalties_pass_through_jit_as_arguments():
    traces = []

    @jax.jit
    def apply(penalty, x):
        traces.append(1)
        return proximal.prox(penalty, x, 1.0)

    for l1 in (0.1, 0.2, 0.3):
        apply(ElasticNet(l1=l1), jnp.ones(3))
    assert len(traces) == 1


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: ElasticNet(l1=-0.1), "l1: must be non-negative"),
        (lambda: ElasticNet(l2=float("nan")), "l2: must be non-negative"),
        (lambda: Box(1.0, 0.0), "lower: must not exceed upper"),
        (lambda: Box(lower=float("nan")), "lower: must not be NaN"),
        (lambda: Box({"a": 0.0, "b": 2.0}, 1.0), "lower: must not exceed upper"),
        (lambda: ElasticNet(l1="a"), "l1: expected a real number"),
        (lambda: ElasticNet(l1=None), "l1: expected a real number"),
        (lambda: ElasticNet(l2=1j), "l2: expected a real number"),
        (lambda: Box(lower="a"), "lower: expected a real number"),
        (lambda: ElasticNet(l1=0.1).prox(jnp.ones(2), -1.0), "step_size: must be non-negative"),
    ],
)
def test_bad_penalties_are_refused(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


V = jnp.array([-2.0, -0.5, 0.0, 0.5, 3.0])


@pytest.mark.parametrize(
    "call,error,match",
    [
        # Before, each of these returned wrong values silently (the review's reproducers).
        (lambda: proximal.soft_threshold(V, -1.0), ValueError, "threshold: must be non-negative"),
        (lambda: proximal.soft_threshold(V, jnp.nan), ValueError, "threshold: must be non-"),
        (lambda: proximal.prox_l1(V, -0.5, 1.0), ValueError, "step_size: must be non-negative"),
        (lambda: proximal.prox_l1(V, 0.5, -1.0), ValueError, "l1: must be non-negative"),
        (lambda: proximal.prox_l2(V, 1.0, -1.0), ValueError, "l2: must be non-negative"),
        (lambda: proximal.prox_elastic_net(V, 1.0, 1.0, jnp.inf), ValueError, "l2: must be"),
        (lambda: proximal.prox_box(V, 1.0, 0.0), ValueError, "lower: must not exceed upper"),
        (lambda: proximal.prox_box(V, 0.0, jnp.nan), ValueError, "upper: must not be NaN"),
        (lambda: proximal.prox_l1(V, 0.5, "a"), TypeError, "l1: expected a real number"),
        (lambda: proximal.soft_threshold(V, True), TypeError, "threshold: expected a real"),
    ],
)
def test_bad_parameters_of_the_maps_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_checks_leave_infinite_and_traced_parameters_alone():
    """``t = +inf``, ``η = +inf`` and infinite bounds have their limits; traced values cannot be
    checked (nor can the placeholders of JAX's transformations, which rebuild penalties
    without the checks)."""
    np.testing.assert_array_equal(proximal.soft_threshold(V, jnp.inf), jnp.zeros(5))
    np.testing.assert_array_equal(proximal.prox_l1(V, jnp.inf, 1.0), jnp.zeros(5))
    np.testing.assert_array_equal(proximal.prox_box(V, -jnp.inf, jnp.inf), V)
    np.testing.assert_array_equal(jax.jit(proximal.soft_threshold)(V, 1.0), [-1, 0, 0, 0, 2])
    shrunk = jax.vmap(lambda l1: ElasticNet(l1).prox(V, 1.0))(jnp.array([1.0, 2.0]))
    np.testing.assert_array_equal(shrunk[1], [0, 0, 0, 0, 1])
    assert jax.tree.map(lambda _: "label", Box(0.0, 1.0)).lower == "label"


def test_composite_objective_checks_and_subsamples():
    def value_and_grad(x, batch):
        return 0.5 * jnp.mean((x - batch) ** 2), jnp.mean(x - batch, keepdims=True)

    objective = CompositeObjective(value_and_grad, jnp.arange(4.0), ElasticNet(l2=1.0))
    assert objective.num_samples == 4
    assert float(objective.value(jnp.zeros(1))) == pytest.approx(0.5 * np.mean(np.arange(4) ** 2))
    assert objective.subsample(jnp.array([1, 2])).data.tolist() == [1.0, 2.0]
    with pytest.raises(TypeError, match="value_and_grad"):
        CompositeObjective("not callable", jnp.ones(3))
    with pytest.raises(TypeError, match="penalty"):
        CompositeObjective(value_and_grad, jnp.ones(3), penalty=0.1)
    with pytest.raises(ValueError, match="penalty: expected a penalty"):
        proximal.prox({"a": ElasticNet(), "b": ElasticNet()}, jnp.ones(2), 1.0)
