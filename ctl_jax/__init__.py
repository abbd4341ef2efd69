"""ctl_jax: continuous-level learning for image processing in JAX/Flax.

Base networks are ordinary Flax Linen modules; the continuous-level methods (DNI, AdaFM, FTN)
are pure functions of their parameter trees. See README.md for a tour and DESIGN.md for the
invariants.
"""

from ctl_jax.eval.cost import format_cost_table, method_costs, xla_flops
from ctl_jax.eval.filters import filter_similarity, per_layer_filter_similarity
from ctl_jax.eval.metrics import crop_border, psnr, rgb_to_y, ssim
from ctl_jax.nets import AdaFM as AdaFMLayer
from ctl_jax.nets import AdaFMNet, CFSNetMain, DnCNN, adafm_net, cfsnet_main
from ctl_jax.control import Control, as_control
from ctl_jax.tuners import (DNI, FTN, TUNERS, AdaFM, Tuner, apply_at_alpha, apply_tuned, apply_with_alpha_map,
                            hyper_head, hyper_trunk, insert_adafm_slots, interpolate, lerp, make_tuner)

__version__ = "0.1.0"
