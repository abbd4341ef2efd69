"""Base networks (Flax Linen, NHWC): AdaFM-Net, the CFSNet main branch, DnCNN, RED-Net, the
decoupled-learning base network."""

from ctl_jax.nets.adafm_net import AdaFMNet, adafm_net
from ctl_jax.nets.cfsnet import CFSNetMain, cfsnet_main
from ctl_jax.nets.decouple_net import DecoupleNet, decouple_net
from ctl_jax.nets.dncnn import DnCNN
from ctl_jax.nets.layers import AdaFM, pixel_shuffle
from ctl_jax.nets.rednet import RedNet, rednet
from ctl_jax.nets.transform_net import TransformNet, transform_net
