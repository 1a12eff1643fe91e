"""Models: mean-field, NTK-regime and residual networks. Models know nothing of kernels."""

from mflangevin.models import losses as losses
from mflangevin.models.ntk import NTKNetwork as NTKNetwork
from mflangevin.models.two_layer import MeanFieldNetwork as MeanFieldNetwork
