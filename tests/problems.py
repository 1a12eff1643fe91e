"""Test problems shared by the test files.

One builder of the teacher–student network problem, so that the files state only their sizes
(and equal sizes give equal, shared, compiled programs): the data are
``teacher_student(key(0), num_samples, input_dim)`` and the particles
``net.init_particles(key(1), num_particles, input_dim)``.
"""

from typing import NamedTuple

import jax

from mflangevin.datasets import teacher_student
from mflangevin.models import MeanFieldNetwork
from mflangevin.types import Array, ArrayTree


class NetworkProblem(NamedTuple):
    net: MeanFieldNetwork
    X: Array
    y: Array
    particles: ArrayTree


def network_problem(
    num_samples: int, input_dim: int, num_particles: int, neuron: str = "tanh", **kwargs
) -> NetworkProblem:
    """The network ``MeanFieldNetwork(neuron, **kwargs)`` (``dtype=`` goes to the particles),
    teacher–student data and initial particles."""
    dtype = kwargs.pop("dtype", None)
    X, y, _ = teacher_student(jax.random.key(0), num_samples, input_dim)
    net = MeanFieldNetwork(neuron, **kwargs)
    init = {} if dtype is None else {"dtype": dtype}
    particles = net.init_particles(jax.random.key(1), num_particles, input_dim, **init)
    return NetworkProblem(net, X, y, particles)
