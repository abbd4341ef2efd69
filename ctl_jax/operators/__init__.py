"""Parameterised image operators of the decoupled-learning paper (Fan et al., "A General Decoupled
Learning Framework for Parameterized Image Operators", TPAMI 2019), in JAX.

They generate the ground truth for a network that imitates each operator over its whole
parameter range. Each entry of :data:`OPERATORS` is an :class:`OperatorSpec`: the function and
the range of its one parameter, as the authors' ``training_data_generation.m`` samples it.
Filters map an input image to the target; restoration operators map the clean target to the
input. Defaults: the authors' own defaults for L0, WLS, RTV and RGF, their data-generation
setting for the shock filter (t = 1.5), their demo's alpha = 5 for LLF, and common benchmark or
central levels elsewhere.
"""

from ctl_jax.operators.l0 import l0_smooth
from ctl_jax.operators.llf import local_laplacian
from ctl_jax.operators.restoration import deblock, denoise, super_resolution
from ctl_jax.operators.rgf import rolling_guidance
from ctl_jax.operators.rtv import rtv_smooth
from ctl_jax.operators.shock import shock_filter
from ctl_jax.operators.spec import OperatorSpec, as_image, luminance
from ctl_jax.operators.wls import wls_smooth
from ctl_jax.operators.wmf import weighted_median

_SPECS = (
    OperatorSpec("l0", "filter", "lambda", 0.002, 0.2, True, 0.02, l0_smooth,
                 "L0 gradient minimisation (Xu et al. 2011): flattens regions, keeps strong edges."),
    OperatorSpec("wls", "filter", "lambda", 0.1, 10.0, True, 1.0, wls_smooth,
                 "Weighted-least-squares edge-preserving smoothing (Farbman et al. 2008)."),
    OperatorSpec("rtv", "filter", "lambda", 0.002, 0.05, True, 0.01, rtv_smooth,
                 "Relative-total-variation texture removal (Xu et al. 2012), sigma = 3."),
    OperatorSpec("rgf", "filter", "sigma_s", 1.0, 10.0, False, 3.0, rolling_guidance,
                 "Rolling guidance filter (Zhang et al. 2014), sigma_r = 0.05, 4 iterations."),
    OperatorSpec("wmf", "filter", "radius", 1.0, 10.0, False, 5.0, weighted_median,
                 "Weighted median filter (Zhang et al. 2014), window radius floor(r), sigma = 0.1."),
    OperatorSpec("llf", "filter", "alpha", 2.0, 8.0, False, 5.0, local_laplacian,
                 "Fast local Laplacian detail enhancement (Aubry et al. 2014), sigma_r = 0.1, N = 10."),
    OperatorSpec("shock", "filter", "t", 1.0, 10.0, False, 1.5, shock_filter,
                 "Osher-Rudin shock filter on the luma, evolution time t with dt = 0.1."),
    OperatorSpec("denoise", "restoration", "sigma", 10.0, 70.0, False, 25.0, denoise,
                 "Additive white Gaussian noise, sigma on the 0-255 scale."),
    OperatorSpec("denoise_20_80", "restoration", "sigma", 20.0, 80.0, False, 50.0, denoise,
                 "Gaussian noise over the FTN paper's colour-denoising range, sigma 20 -> 80 (0-255 scale)."),
    OperatorSpec("deblock", "restoration", "quality", 10.0, 20.0, False, 10.0, deblock,
                 "JPEG compression at an integer quality factor.", integer=True),
    OperatorSpec("super_resolution", "restoration", "scale", 2.0, 4.0, False, 3.0, super_resolution,
                 "Bicubic down-sampling by an integer scale, up-sampled back to the input size.",
                 integer=True),
)

OPERATORS: dict[str, OperatorSpec] = {spec.name: spec for spec in _SPECS}


def get_operator(name: str) -> OperatorSpec:
    """The spec registered under ``name``; ValueError listing the known names otherwise."""
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; known operators: {', '.join(OPERATORS)}")
    return OPERATORS[name]


__all__ = [
    "OPERATORS", "OperatorSpec", "as_image", "deblock", "denoise", "get_operator", "l0_smooth",
    "local_laplacian", "luminance", "rolling_guidance", "rtv_smooth", "shock_filter",
    "super_resolution", "weighted_median", "wls_smooth",
]
