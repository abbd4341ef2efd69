"""What per-sample gamma costs a decoupled-learning model: one gamma per batch vs one per sample.

    python benchmarks/hyper_gamma.py                        # small DecoupleNet, batch 8, 48x48
    python benchmarks/hyper_gamma.py --variant paper --size 96

For a training step (forward + backward + Adam) and for inference, prints the time with one gamma
for the whole batch (one weight prediction, ordinary batched convolutions) and with a gamma per
sample, run with ``lax.map`` (samples one after another) and with ``vmap`` (XLA turns the
per-sample kernels into grouped convolutions), all measured in this process, and the ratios. The
model is the ``HyperTuner`` the training stack runs (``Control.vector`` for one gamma per batch,
``Control.per_sample`` for one per sample, its ``per_sample`` field choosing map or vmap).
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import optax

from timing import median_time

from ctl_jax import Control
from ctl_jax.nets.decouple_net import DecoupleNet
from ctl_jax.tuners.hyper import HyperTuner


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    model = DecoupleNet(args.variant)
    x = jax.random.uniform(jax.random.key(0), (args.batch, args.size, args.size, 3))
    target = 0.8 * x
    tuner = HyperTuner()  # every conv kernel predicted from gamma
    psi = tuner.init(jax.random.key(1), {}, model, x)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(psi)
    gammas = jnp.linspace(0, 1, args.batch)[:, None]
    by_map, by_vmap = (dataclasses.replace(tuner, per_sample=mode) for mode in ("map", "vmap"))
    modes = {"one gamma per batch": lambda p: tuner.apply(model, {}, p, x, Control.vector(gammas[0])),
             "per sample, lax.map": lambda p: by_map.apply(model, {}, p, x, Control.per_sample(gammas)),
             "per sample, vmap": lambda p: by_vmap.apply(model, {}, p, x, Control.per_sample(gammas))}

    print(f"DecoupleNet {args.variant!r}, batch {args.batch}, {args.size}x{args.size}, all convs predicted; "
          f"devices: {jax.devices()}")
    rows = []
    for name, forward in modes.items():
        infer = jax.jit(forward)

        @jax.jit
        def train_step(p, s, forward=forward):
            loss, grads = jax.value_and_grad(lambda p: jnp.mean((forward(p) - target) ** 2))(p)
            updates, s = optimizer.update(grads, s, p)
            return optax.apply_updates(p, updates), s, loss

        t_infer = median_time(lambda: infer(psi), args.repeats)
        t_train = median_time(lambda: train_step(psi, opt_state), args.repeats)
        rows.append((name, t_infer, t_train))
    base_infer, base_train = rows[0][1], rows[0][2]
    for name, t_infer, t_train in rows:
        print(f"{name:22s}: inference {1e3 * t_infer:8.1f} ms ({t_infer / base_infer:4.1f}x)   "
              f"training step {1e3 * t_train:8.1f} ms ({t_train / base_train:4.1f}x)")


if __name__ == "__main__":
    main()
