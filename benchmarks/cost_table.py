"""Cost of the continuous-level methods on a base network (FTN paper Tables 3/4) and FTN's
measured inference overhead at a fixed alpha.

    python benchmarks/cost_table.py                      # AdaFM-Net nb=16 nf=64, RGB 256x256
    python benchmarks/cost_table.py --net cfsnet --variant cfsnet10 --size 128

Prints: the parameter / FLOP table (baseline, +AdaFM k=5, +FTN, +FTN G=16, +DNI, +CFSNet and
+Dynamic-Net with a tuning block at every residual block; for AdaFM-Net the FTN paper's Table 4
overheads next to it), then the time
of a plain forward pass with the base parameters against the same forward with FTN parameters
interpolated once at alpha=0.5, measured alternately in this process (median of --rounds), and
the one-off cost of interpolating the kernels relative to one forward pass.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp

from ctl_jax.eval.cost import format_cost_table, method_costs
from ctl_jax.nets.registry import FACTORIES
from ctl_jax.tuners import interpolate, make_tuner


def timed(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", choices=sorted(FACTORIES), default="adafm_net")
    parser.add_argument("--variant", default=None, help="variant of the network's VARIANTS table")
    parser.add_argument("--size", type=int, default=256, help="square input size in pixels")
    parser.add_argument("--rounds", type=int, default=15, help="alternating timing rounds")
    parser.add_argument("--method", default="ftn", help="tuner whose inference overhead is timed")
    args = parser.parse_args()

    make = functools.partial(FACTORIES[args.net], args.variant, channels=3)
    shape = (1, args.size, args.size, 3)
    rows = method_costs(make, shape, methods=("baseline", "adafm", "ftn", "ftn-gc16", "dni", "cfsnet", "dynamic-net"))
    print(f"{args.net} {args.variant or ''} input {shape}; XLA FLOPs (2 per multiply-add)\n")
    print(format_cost_table(rows))
    if args.net == "adafm_net":
        print("\nFTN paper, Table 4 (AdaFM-Net, GFLOPs vs baseline 25.11): +CFSNet +87.02%, +AdaFM +3.58%, "
              "+FTN +0.10%, +FTN G=16 +0.01% (its GFLOPs 25.36 and 25.13 give +1.00% and +0.08%)")

    model = make(adafm_kernel=None)
    x = jax.random.uniform(jax.random.key(0), shape)
    theta0 = model.init(jax.random.key(1), x)["params"]
    tuner = make_tuner(args.method)
    if tuner.kind != "parameter":
        parser.error(f"--method {args.method} is a {tuner.kind} tuner; the timing needs a parameter-space one")
    phi = tuner.init(jax.random.key(2), theta0)
    forward = jax.jit(lambda p, x: model.apply({"params": p}, x))
    derive = jax.jit(lambda t, p, a: interpolate(tuner, t, p, a))
    theta_alpha = derive(theta0, phi, jnp.float32(0.5))
    for p in (theta0, theta_alpha):  # compile and warm up
        timed(forward, p, x)
    timed(derive, theta0, phi, jnp.float32(0.3))
    base_t, tuned_t, derive_t = [], [], []
    for i in range(args.rounds):  # alternate the order so that drift favours neither
        pair = [(base_t, theta0), (tuned_t, theta_alpha)]
        for times, params in (pair if i % 2 == 0 else pair[::-1]):
            times.append(timed(forward, params, x))
        derive_t.append(timed(derive, theta0, phi, jnp.float32(i / args.rounds)))
    base, tuned, once = (statistics.median(t) for t in (base_t, tuned_t, derive_t))
    print(f"\nInference at a fixed alpha ({args.method}, kernels interpolated once), median of {args.rounds}:")
    print(f"  plain base forward       {1e3 * base:9.2f} ms")
    print(f"  {args.method} forward at alpha   {1e3 * tuned:9.2f} ms")
    print(f"  overhead                 {100 * (tuned - base) / base:+9.2f} %   (goal: under 1%)")
    print(f"  (best of {args.rounds}: base {1e3 * min(base_t):.2f} ms, tuned {1e3 * min(tuned_t):.2f} ms, "
          f"{100 * (min(tuned_t) - min(base_t)) / min(base_t):+.2f} %)")
    print(f"  one-off kernel interpolation {1e3 * once:.2f} ms = {100 * once / base:.2f}% of one forward")


if __name__ == "__main__":
    main()
