"""Classical (non-learned or barely learned) restoration methods, as pure JAX functions.

``dct_denoiser``: the overlapped N x N DCT thresholding denoiser (seed TP1), a continuous-level
denoiser by construction: the noise level sigma is its input.
"""

from ctl_jax.classical.dct_denoiser import (
    add_noise,
    dct_basis,
    dct_coefficients,
    dct_denoise,
    dct_kernel,
    find_best_ratio,
    flops_per_pixel,
    hard_threshold,
    idct_average,
    learn_ratio,
    learn_toy_threshold,
    smooth_threshold,
    soft_threshold,
    sweep_ratio,
    threshold_coefficients,
)

__all__ = [
    "add_noise", "dct_basis", "dct_coefficients", "dct_denoise", "dct_kernel", "find_best_ratio", "flops_per_pixel",
    "hard_threshold", "idct_average",
    "learn_ratio", "learn_toy_threshold", "smooth_threshold", "soft_threshold", "sweep_ratio",
    "threshold_coefficients",
]
