"""A small digit classifier, trained here, to score generated digits (Dynamic-Net's 3 -> 8 experiment).

(N, 28, 28, 1) in [0, 1] -> (N, 10) logits: conv3x3 16 -> ReLU -> 2x2 average pool -> conv3x3 32 ->
ReLU -> pool -> Dense 64 -> ReLU -> Dense 10. Trained with Adam on cross-entropy.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


class DigitNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        for width in (16, 32):
            x = nn.avg_pool(nn.relu(nn.Conv(width, (3, 3), padding=1)(x)), (2, 2), (2, 2))
        return nn.Dense(10)(nn.relu(nn.Dense(64)(x.reshape(x.shape[0], -1))))


@dataclasses.dataclass(frozen=True)
class DigitClassifier:
    params: dict
    accuracy: float  # on the held-out images given to :func:`train_digit_classifier`

    def predict(self, images) -> np.ndarray:
        """(N, 28, 28, 1) in [0, 1] -> (N,) predicted digits."""
        return np.asarray(jnp.argmax(_logits(self.params, jnp.asarray(images, jnp.float32)), axis=-1))


@jax.jit
def _logits(params, x):
    return DigitNet().apply({"params": params}, x)


def train_digit_classifier(images, labels, *, held_out: float = 0.2, steps: int = 800, batch: int = 128,
                           seed: int = 0) -> DigitClassifier:
    """Train on all but the last ``held_out`` share of (images (N, 28, 28, 1), labels (N,)); the
    accuracy is measured on that share."""
    images, labels = np.asarray(images, np.float32), np.asarray(labels)
    n_train = int(len(images) * (1 - held_out))
    optimizer = optax.adam(1e-3)
    params = DigitNet().init(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))["params"]
    state = optimizer.init(params)

    @jax.jit
    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
            DigitNet().apply({"params": p}, x), y).mean())(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, n_train, batch)
        params, state, _ = step(params, state, images[idx], labels[idx])
    model = DigitClassifier(params, 0.0)
    test = slice(n_train, None)
    accuracy = float(np.mean(model.predict(images[test]) == labels[test])) if n_train < len(images) else float("nan")
    return DigitClassifier(params, accuracy)
