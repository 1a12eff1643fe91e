"""Property-based tests of the public entry points (hypothesis): valid inputs give finite results
of the right shapes and dtypes; invalid ones raise ``ValueError``/``TypeError`` naming the
argument, from the eager checks (review 2026-11, issue 14).

Shapes come from small fixed sets, so that the few compiled programs are shared between
examples and the module stays fast.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mflangevin
from mflangevin.models import MeanFieldNetwork

settings.register_profile(
    "mflangevin-properties",
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = settings.get_profile("mflangevin-properties")

NUM_PARTICLES = (2, 5)
INPUT_DIMS = (1, 3)
NUM_SAMPLES = (4, 7)
NEURONS = {
    "tanh": ("w", "b"),
    "bounded": ("w", "b", "a"),
    "output_weight": ("w", "b", "a"),
}

finite_floats = st.floats(-3.0, 3.0, allow_nan=False, width=32)
bad_numbers = st.sampled_from([0.0, -0.5, math.nan, math.inf, -math.inf])


@st.composite
def problems(draw):
    """A network, its objective on data of a drawn size, and matching particles."""
    neuron = draw(st.sampled_from(sorted(NEURONS)))
    n, d, num = (draw(st.sampled_from(s)) for s in (NUM_SAMPLES, INPUT_DIMS, NUM_PARTICLES))
    seed = draw(st.integers(0, 2**16))
    keys = jax.random.split(jax.random.key(seed), 3)
    X = jax.random.normal(keys[0], (n, d))
    y = jnp.tanh(X[:, 0])
    net = MeanFieldNetwork(neuron)
    l2 = draw(st.sampled_from([0.0, 1e-3, 0.1]))
    objective = net.objective(
        X, y, l2=l2, reference=None if l2 else mflangevin.gaussian_reference(1.0)
    )
    return net, objective, net.init_particles(keys[1], num, d), keys[2]


@st.composite
def broken_particles(draw, particles):
    """The particles with one defect, and the message that must name it."""
    name = draw(st.sampled_from(sorted(particles)))
    kind = draw(st.sampled_from(["missing", "extra", "rank", "nan", "int", "axis", "list"]))
    bad = dict(particles)
    if kind == "missing":
        del bad[name]
        return bad, ValueError, f"^position: .*leaf '{name}' is missing"
    if kind == "extra":
        bad["extra"] = jnp.zeros_like(particles["b"])
        return bad, ValueError, r"^position: the leaves \['extra'\] do not enter"
    if kind == "rank":
        bad["w"] = particles["w"][..., None]
        return bad, ValueError, "^position: "
    if kind == "nan":
        value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        bad[name] = particles[name].at[0].set(value)
        return bad, ValueError, f"^position: leaf '{name}' has NaN or infinite"
    if kind == "int":
        bad[name] = particles[name].astype(jnp.int32)
        return bad, TypeError, "^position: particles must be floating point"
    if kind == "axis":
        bad[name] = jnp.concatenate([particles[name], particles[name][:1]])
        return bad, ValueError, "^position: all leaves must share the leading particle axis"
    bad[name] = np.asarray(particles[name]).tolist()
    return bad, (TypeError, ValueError), "^position: "


@PROFILE
@given(data=st.data())
def test_objective_energy_is_a_finite_scalar_of_the_particles_dtype(data):
    net, objective, particles, _ = data.draw(problems())
    energy, drift = jax.jit(objective.energy_and_drift)(particles)
    assert energy.shape == () and energy.dtype == jnp.float32 and bool(jnp.isfinite(energy))
    for name, leaf in particles.items():
        assert drift[name].shape == leaf.shape and drift[name].dtype == leaf.dtype
        assert bool(jnp.all(jnp.isfinite(drift[name])))


@PROFILE
@given(
    l2=st.one_of(bad_numbers.filter(lambda v: not v >= 0 or math.isinf(v)), st.just("0.1")),
    n=st.sampled_from([0, 3]),
)
def test_objective_refuses_bad_l2_and_empty_data(l2, n):
    X, y = jnp.ones((n, 2)), jnp.zeros(n)
    with pytest.raises((ValueError, TypeError), match="^(l2|X): "):
        MeanFieldNetwork().objective(X, y, l2=l2)
    if n == 3:
        with pytest.raises(TypeError, match="^reference: "):
            MeanFieldNetwork().objective(X, y, reference="gaussian")


@PROFILE
@given(
    labels=st.lists(st.sampled_from([-2.0, 0.0, 0.5, 1.0, math.nan]), min_size=4, max_size=4),
    loss=st.sampled_from(["logistic", "smoothed_hinge"]),
)
def test_objective_labels_in_the_loss_domain(labels, loss):
    X, y = jnp.ones((4, 2)), jnp.asarray(labels, jnp.float32)
    valid = all(abs(v) == 1 for v in labels)
    if valid:
        assert MeanFieldNetwork(loss=loss).objective(X, y).finite_sum
    else:
        with pytest.raises(ValueError, match="^y: "):
            MeanFieldNetwork(loss=loss).objective(X, y)


@PROFILE
@given(data=st.data(), step_size=st.sampled_from([0.05, 0.2]))
def test_mfld_step_keeps_finite_particles_of_the_same_shapes(data, step_size):
    _, objective, particles, key = data.draw(problems())
    algorithm = mflangevin.mfld(objective, step_size=step_size, temperature=1e-2)
    state, info = jax.jit(algorithm.step)(key, algorithm.init(particles))
    assert jax.tree.map(jnp.shape, state.position) == jax.tree.map(jnp.shape, particles)
    assert jax.tree.map(jnp.result_type, state.position) == jax.tree.map(jnp.result_type, particles)
    assert bool(jnp.isfinite(info.energy)) and not bool(info.is_divergent)


@PROFILE
@given(data=st.data(), entry=st.sampled_from(["mfld", "pda", "streaming_mfld"]))
def test_broken_particles_are_named_before_any_step(data, entry):
    _, objective, particles, _ = data.draw(problems())
    bad, error, match = data.draw(broken_particles(particles))
    if entry == "pda":
        algorithm = mflangevin.pda(objective, 0.1, 1e-2, 2)
    else:
        algorithm = getattr(mflangevin, entry)(objective, 0.1, 1e-2)
    with jax.numpy_rank_promotion("allow"), pytest.raises(error, match=match):
        algorithm.init(bad)


@PROFILE
@given(
    data=st.data(),
    argument=st.sampled_from(["step_size", "temperature"]),
    value=st.one_of(bad_numbers, st.just("0.1"), st.just(None), st.just(jnp.full((2,), 0.1))),
    entry=st.sampled_from(["mfld", "pda", "streaming_mfld"]),
)
def test_bad_numbers_are_named(data, argument, value, entry):
    _, objective, _, _ = data.draw(problems())
    args = {"step_size": 0.1, "temperature": 1e-2, argument: value}
    extra = (2,) if entry == "pda" else ()
    named = "inner_step_size" if (entry, argument) == ("pda", "step_size") else argument
    with pytest.raises((ValueError, TypeError), match=f"^{named}: "):
        getattr(mflangevin, entry)(objective, args["step_size"], args["temperature"], *extra)


@PROFILE
@given(data=st.data(), temperature=st.sampled_from([0.05, 0.5]))
def test_duality_gap_is_finite_with_its_effective_sample_size(data, temperature):
    _, objective, particles, key = data.draw(problems())
    if objective.reference is None and objective.penalty is None:
        return
    many = jax.tree.map(lambda x: jnp.concatenate([x, 1.1 * x, 0.9 * x]), particles)
    with warnings.catch_warnings():  # few draws: the small-ESS warning is expected, and tested
        warnings.simplefilter("ignore", RuntimeWarning)  # in tests/certificates/test_duality.py
        certificate = mflangevin.duality_gap(objective, many, temperature, key, num_samples=128)
    for field in certificate:
        assert field.shape == () and field.dtype == jnp.float32
    assert bool(jnp.isfinite(certificate.dual)) and bool(jnp.isfinite(certificate.dual_stderr))
    assert 1 <= float(certificate.dual_ess) <= 128


@PROFILE
@given(
    temperature=st.one_of(bad_numbers, st.just("x")),
    num_samples=st.sampled_from([0, -1, 2.5, 64]),
)
def test_duality_gap_refuses_bad_arguments(temperature, num_samples):
    net = MeanFieldNetwork()
    objective = net.objective(jnp.ones((4, 2)), jnp.zeros(4), l2=1e-3)
    particles = net.init_particles(jax.random.key(0), 4, 2)
    with pytest.raises((ValueError, TypeError), match="^(temperature|num_samples): "):
        mflangevin.duality_gap(
            objective, particles, temperature, jax.random.key(1), num_samples=num_samples
        )


@settings(PROFILE, max_examples=4)
@given(num_draws=st.sampled_from([4, 6]), num_chains=st.sampled_from([1, 2]))
def test_to_datatree_shapes(num_draws, num_chains):
    from mflangevin import arviz as mf_arviz

    rng = np.random.default_rng(num_draws + num_chains)
    w = rng.normal(size=(num_chains, num_draws, 3, 2)).astype(np.float32)

    class State:
        position = {"w": w}
        count = np.tile(np.arange(1, num_draws + 1), (num_chains, 1))

    infos = {"energy": rng.normal(size=(num_chains, num_draws)).astype(np.float32)}
    tree = mf_arviz.to_datatree((State(), infos), has_chain_axis=True)
    assert tree["posterior"]["w"].shape == (num_chains, num_draws, 3, 2)
    assert tree["particle_measure"]["w"].shape == (num_chains, 3, 2)
    assert np.isfinite(tree["posterior"]["w_mean"].values).all()
    with pytest.raises(ValueError, match="^thinning: "):
        mf_arviz.to_datatree((State(), infos), thinning=0)
