"""Training-step speed of AdaFM-Net (nb=16, nf=64), batch 16, 96x96 patches, AdaFM k=5.

    python benchmarks/train_step.py                              # paper setting, micro-batches 1 and auto
    python benchmarks/train_step.py --micro-batches 1 2 4 8 16   # choose the CPU micro-batch count
    python benchmarks/train_step.py --blocks 4 --features 32 --batch 4    # quick look

Prints, all measured in this process:
- for each micro-batch count (``steps.micro_batch_mean``; "auto" is what the trainer uses here):
  the stage-1 step time (all base parameters trained), the stage-2 step time (only the AdaFM
  parameters; the base is an input, so its weight gradients are never computed) and their ratio;
- the FLOPs of each step from XLA's cost analysis and the achieved FLOP/s;
- the peak conv FLOP/s measured here on the network's dominant conv (3x3, nf -> nf, at the
  body's half resolution): the best time of its forward, data-gradient and weight-gradient convs,
  each timed as one op and as 8 independent batch chunks in one program (XLA may run those
  concurrently, which one conv does not exploit); and each step's achieved FLOP/s (median step
  time) as a fraction of that peak.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

from timing import best_time, median_time

from ctl_jax.eval.cost import xla_flops
from ctl_jax.nets.adafm_net import AdaFMNet
from ctl_jax.train.steps import make_base_step, make_tune_step, micro_batch_count
from ctl_jax.tuners import AdaFM, insert_adafm_slots


def conv_rates(batch, size, features, repeats) -> dict:
    """Best FLOP/s of the dominant conv (3x3, features -> features) at its shape: forward, data
    gradient and weight gradient, each timed as one op and as up to 8 independent batch chunks in
    one program (how much XLA overlaps the chunks varies from run to run, hence the best time)."""
    x = jax.random.normal(jax.random.key(0), (batch, size, size, features))
    w = jax.random.normal(jax.random.key(1), (3, 3, features, features)) * 0.05
    g = jax.random.normal(jax.random.key(2), x.shape)
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    kinds = {  # each (x, w, g) -> result; g is the output gradient, unused by the forward
        "forward": lambda x, w, g: conv(x, w),
        "data gradient": lambda x, w, g: jax.grad(lambda x: jnp.vdot(g, conv(x, w)))(x),
        "weight gradient": lambda x, w, g: jax.grad(lambda w: jnp.vdot(g, conv(x, w)))(w),
    }
    flops = 2.0 * x.size * 9 * features  # one multiply-add per tap, input channel and output element
    rates = {}
    for chunks in sorted({1, min(8, batch)}):
        for name, op in kinds.items():
            chunked = jax.jit(lambda x, w, g, op=op: [op(xc, w, gc) for xc, gc in
                                                      zip(jnp.split(x, chunks), jnp.split(g, chunks))])
            label = name if chunks == 1 else f"{name} x{chunks}"
            rates[label] = flops / best_time(lambda: chunked(x, w, g), repeats)
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--adafm-kernel", type=int, default=5)
    parser.add_argument("--micro-batches", nargs="+", default=["1", "auto"],
                        help="micro-batch counts to time: positive ints dividing --batch, or 'auto'")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    counts = []
    for value in args.micro_batches:
        n = micro_batch_count(args.batch, args.patch ** 2, value if value == "auto" else int(value))
        if n not in counts:
            counts.append(n)
    auto = micro_batch_count(args.batch, args.patch ** 2)

    shape = (args.batch, args.patch, args.patch, 3)
    clean = jax.random.uniform(jax.random.key(0), shape)
    noisy = clean + 0.1 * jax.random.normal(jax.random.key(1), shape)
    opt = optax.adam(1e-4)
    base_net = AdaFMNet(blocks=args.blocks, features=args.features)
    theta = base_net.init(jax.random.key(2), clean)["params"]
    slotted = AdaFMNet(blocks=args.blocks, features=args.features, adafm_kernel=args.adafm_kernel)
    theta0 = insert_adafm_slots(jax.tree.map(jnp.array, theta),
                                jax.eval_shape(slotted.init, jax.random.key(0), clean)["params"])
    tuner = AdaFM()
    phi = tuner.init(None, theta0)

    def timed(step, trainable, *frozen):
        """(median seconds, FLOPs) of ``step``; the updated state is threaded through the calls."""
        state = [jax.tree.map(jnp.copy, trainable), opt.init(trainable)]

        def call():
            state[0], state[1], loss = step(*state, *frozen, noisy, clean)
            return loss

        flops = xla_flops(step, *state, *frozen, noisy, clean)
        return median_time(call, args.repeats), flops

    rows = []
    for n in counts:
        t1, f1 = timed(make_base_step(base_net, opt, micro_batches=n), theta)
        t2, f2 = timed(make_tune_step(slotted, tuner, opt, micro_batches=n), phi, theta0)
        rows.append((n, t1, f1, t2, f2))
    rates = conv_rates(args.batch, args.patch // 2, args.features, args.repeats)
    peak = max(rates.values())

    print(f"AdaFM-Net nb={args.blocks} nf={args.features}, batch {args.batch}, {args.patch}x{args.patch}, "
          f"AdaFM k={args.adafm_kernel}; devices: {jax.devices()}; trainer's micro-batches here: {auto}")
    print(f"conv 3x3 {args.features}->{args.features} at {args.patch // 2}px: " +
          ", ".join(f"{name} {r / 1e9:.1f}" for name, r in rates.items()) + f" GFLOP/s; peak {peak / 1e9:.1f}")
    for n, t1, f1, t2, f2 in rows:
        tag = " (trainer)" if n == auto else ""
        print(f"micro-batches {n}{tag}:")
        for name, t, flops in (("stage 1 (base, all params)", t1, f1), ("stage 2 (AdaFM only)     ", t2, f2)):
            print(f"  {name}: {1e3 * t:8.1f} ms/step  {flops / 1e9:7.2f} GFLOP/step  "
                  f"{flops / t / 1e9:6.1f} GFLOP/s  = {100 * flops / t / peak:5.1f}% of peak")
        print(f"  stage 2 / stage 1 step time: {t2 / t1:.2f}")


if __name__ == "__main__":
    main()
