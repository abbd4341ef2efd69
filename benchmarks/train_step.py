"""Training-step speed of AdaFM-Net (nb=16, nf=64), batch 16, 96x96 patches, AdaFM k=5.

    python benchmarks/train_step.py                  # paper setting
    python benchmarks/train_step.py --blocks 4 --features 32 --batch 4    # quick look

Prints, all measured in this process:
- stage-1 step time (all base parameters trained) and stage-2 step time (only the AdaFM
  parameters; the base is an input, so its weight gradients are never computed);
- the FLOPs of each step from XLA's cost analysis and the achieved FLOP/s;
- the peak conv FLOP/s measured here on the network's dominant conv (3x3, nf -> nf, at the
  body's half resolution): the fastest of its forward, data-gradient and weight-gradient convs,
  each timed alone; and each step's achieved FLOP/s as a fraction of that peak.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from ctl_jax.eval.cost import xla_flops
from ctl_jax.nets.adafm_net import AdaFMNet
from ctl_jax.train.steps import make_base_step, make_tune_step
from ctl_jax.tuning import AdaFM, insert_adafm_slots


def median_time(fn, args_fn, repeats):
    """Median seconds of ``fn(*args_fn())`` over ``repeats`` calls after one warm-up call."""
    jax.block_until_ready(fn(*args_fn()))
    times = []
    for _ in range(repeats):
        args = args_fn()
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def conv_rates(batch, size, features, repeats) -> dict:
    """FLOP/s of the dominant conv (3x3, features -> features) at its shape: forward, data gradient
    and weight gradient, each timed alone. The peak is the fastest of the three."""
    x = jax.random.normal(jax.random.key(0), (batch, size, size, features))
    w = jax.random.normal(jax.random.key(1), (3, 3, features, features)) * 0.05
    g = jax.random.normal(jax.random.key(2), x.shape)
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    kinds = {
        "forward": jax.jit(conv),
        "data gradient": jax.jit(lambda x, w: jax.grad(lambda x: jnp.vdot(g, conv(x, w)))(x)),
        "weight gradient": jax.jit(lambda x, w: jax.grad(lambda w: jnp.vdot(g, conv(x, w)))(w)),
    }
    flops = 2.0 * x.size * 9 * features  # one multiply-add per tap, input channel and output element
    return {name: flops / median_time(f, lambda: (x, w), repeats) for name, f in kinds.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--adafm-kernel", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    shape = (args.batch, args.patch, args.patch, 3)
    clean = jax.random.uniform(jax.random.key(0), shape)
    noisy = clean + 0.1 * jax.random.normal(jax.random.key(1), shape)
    opt = optax.adam(1e-4)

    base_net = AdaFMNet(blocks=args.blocks, features=args.features)
    theta = base_net.init(jax.random.key(2), clean)["params"]
    base_step = make_base_step(base_net, opt)
    state = {"theta": theta, "opt": opt.init(theta)}

    def base_args():
        return state["theta"], state["opt"], noisy, clean

    base_flops = xla_flops(base_step, *base_args())

    def run_base(*a):
        state["theta"], state["opt"], loss = base_step(*a)
        return loss

    slotted = AdaFMNet(blocks=args.blocks, features=args.features, adafm_kernel=args.adafm_kernel)
    theta0 = insert_adafm_slots(jax.tree.map(jnp.array, theta),
                                jax.eval_shape(slotted.init, jax.random.key(0), clean)["params"])
    tuner = AdaFM()
    tune_step = make_tune_step(slotted, tuner, opt)
    phi = tuner.init(None, theta0)
    tstate = {"phi": phi, "opt": opt.init(phi)}

    def tune_args():
        return tstate["phi"], tstate["opt"], theta0, noisy, clean

    tune_flops = xla_flops(tune_step, *tune_args())

    def run_tune(*a):
        tstate["phi"], tstate["opt"], loss = tune_step(*a)
        return loss

    t1 = median_time(run_base, base_args, args.repeats)
    t2 = median_time(run_tune, tune_args, args.repeats)
    rates = conv_rates(args.batch, args.patch // 2, args.features, args.repeats)
    peak = max(rates.values())

    print(f"AdaFM-Net nb={args.blocks} nf={args.features}, batch {args.batch}, {args.patch}x{args.patch}, "
          f"AdaFM k={args.adafm_kernel}; devices: {jax.devices()}")
    print(f"conv 3x3 {args.features}->{args.features} at {args.patch // 2}px: " +
          ", ".join(f"{name} {r / 1e9:.1f}" for name, r in rates.items()) + f" GFLOP/s; peak {peak / 1e9:.1f}")
    for name, t, flops in (("stage 1 (base, all params)", t1, base_flops),
                           ("stage 2 (AdaFM only)     ", t2, tune_flops)):
        print(f"{name}: {1e3 * t:8.1f} ms/step  {flops / 1e9:7.2f} GFLOP/step  "
              f"{flops / t / 1e9:6.1f} GFLOP/s  = {100 * flops / t / peak:5.1f}% of peak")
    print(f"stage 2 / stage 1 step time: {t2 / t1:.2f}")


if __name__ == "__main__":
    main()
