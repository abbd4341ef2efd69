"""Adversarial losses on discriminator logits: the standard (non-saturating) GAN and ESRGAN's
relativistic average GAN (RaGAN), and the perceptual (feature) term of perceptual SR.

Logits are the discriminator's raw outputs C(x), shapes (N,) or (N, 1). With sigma the logistic
function and BCE(z, t) = -t log sigma(z) - (1 - t) log(1 - sigma(z)) (computed as softplus, stable):

- standard: L_D = mean BCE(C(real), 1) + mean BCE(C(fake), 0); L_G = mean BCE(C(fake), 1)
  (Goodfellow et al. 2014, the non-saturating generator loss).
- RaGAN (ESRGAN Eq. 1-2): D_Ra(a, b) = sigma(C(a) - E[C(b)]);
  L_D = (mean BCE(C(real) - E C(fake), 1) + mean BCE(C(fake) - E C(real), 0)) / 2,
  L_G = (mean BCE(C(real) - E C(fake), 0) + mean BCE(C(fake) - E C(real), 1)) / 2,
  so the generator also gains from making real images look less real (gradients from both terms).

``perceptual``: a loss term (registered with ``ctl_jax.losses``) for (pred, target) RGB batches: the
mean absolute difference of loss-network features at one deep layer, ESRGAN's L1 on VGG features.
The default loss network is the offline random one (``ctl_jax.losses.perceptual``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ctl_jax.losses import register_loss

KINDS = ("ragan", "standard")
PERCEPTUAL_LAYER = "relu4_1"  # the deepest layer of the random loss network's stages before its last


def bce_with_logits(logits, target: float):
    """Mean binary cross-entropy of logits against a constant target 0 or 1."""
    return jnp.mean(jax.nn.softplus(-logits) if target == 1 else jax.nn.softplus(logits))


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown GAN loss {kind!r}; choose one of {KINDS}")
    return kind


def discriminator_loss(real_logits, fake_logits, kind: str = "ragan"):
    """L_D for one batch of real and generated images' logits (see the module docstring)."""
    if check_kind(kind) == "standard":
        return bce_with_logits(real_logits, 1) + bce_with_logits(fake_logits, 0)
    return (bce_with_logits(real_logits - jnp.mean(fake_logits), 1)
            + bce_with_logits(fake_logits - jnp.mean(real_logits), 0)) / 2


def generator_loss(real_logits, fake_logits, kind: str = "ragan"):
    """L_G for one batch (``real_logits`` is unused by the standard loss)."""
    if check_kind(kind) == "standard":
        return bce_with_logits(fake_logits, 1)
    return (bce_with_logits(real_logits - jnp.mean(fake_logits), 0)
            + bce_with_logits(fake_logits - jnp.mean(real_logits), 1)) / 2


@functools.lru_cache(maxsize=1)
def _loss_network():
    from ctl_jax.losses.perceptual import random_loss_network

    with jax.ensure_compile_time_eval():  # concrete weights even when first asked for inside a jitted step
        return random_loss_network(0)


def perceptual_loss(pred, target):
    """mean |phi(pred) - phi(target)| at ``PERCEPTUAL_LAYER`` of the random loss network; RGB (N, H, W, 3)."""
    net = _loss_network()
    both = net.features(jnp.concatenate([pred, target], axis=0), (PERCEPTUAL_LAYER,))[PERCEPTUAL_LAYER]
    f_pred, f_target = jnp.split(both, 2, axis=0)
    return jnp.mean(jnp.abs(f_pred - jax.lax.stop_gradient(f_target)))


register_loss("perceptual", perceptual_loss)
