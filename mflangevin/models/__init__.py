"""Models: mean-field, NTK-regime and residual networks.

Models build objectives and know nothing of kernels, except the optional MFLD block of ResFGB.
"""

from mflangevin.models import losses as losses
from mflangevin.models import resnet as resnet
from mflangevin.models.linear import LinearClassifier as LinearClassifier
from mflangevin.models.linear import LinearRegressor as LinearRegressor
from mflangevin.models.ntk import NTKNetwork as NTKNetwork
from mflangevin.models.resnet import MFLDBlock as MFLDBlock
from mflangevin.models.resnet import MLPBlock as MLPBlock
from mflangevin.models.resnet import ResFGB as ResFGB
from mflangevin.models.resnet import ResidualNetwork as ResidualNetwork
from mflangevin.models.two_layer import MeanFieldNetwork as MeanFieldNetwork
