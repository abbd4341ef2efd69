"""Throughput of the control-sweep strategies (vmap, lax.map in chunks, loop) measured in one process.

    python benchmarks/sweep_strategies.py                       # AdaFM-Net small and paper, FTN-gc16
    python benchmarks/sweep_strategies.py --variants small --rounds 5 --chunks 2 4

Each strategy evaluates the same sweep as ``ctl_jax.eval.sweep``: one 256x256 RGB image degraded at
--levels noise levels (the batch, by the task's ``eval_input``), --alphas controls, PSNR/SSIM of
every 8-bit output. The functions timed are ``sweep_fn(model, strategy)``, the ones ``sweep`` uses,
on a controllable model held in memory (what ``load_run`` returns for a run folder). Compilation is
timed separately; then --rounds rounds run every strategy once each, the order rotated every round
so that drift favours none. Prints the median time per sweep and the throughput in alpha-images per
second (alphas x levels / time), and the fastest strategy per variant (``AUTO_STRATEGY`` cites this
output).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.eval.sweep import sweep_fn
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.tasks import Restoration
from ctl_jax.train.runs import ControllableModel
from ctl_jax.tuners import make_tuner
from ctl_jax.tuners.trees import param_template


def timed(fn, *args) -> tuple[float, jax.Array]:
    """(seconds, result) of one call, waiting for the result."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - start, out


def perturbed(tree, seed: int, scale: float = 0.01):
    """A trained-looking phi (init + noise), so that theta1 differs from theta0."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def controllable(spec: NetworkSpec, tuner, theta0, phi, task, size: int) -> ControllableModel:
    """A tuned model held in memory, as ``load_run`` would return it."""
    return ControllableModel.in_memory(spec, task, theta0, phi, tuner, input_size=size)


def bench_variant(variant: str, args) -> None:
    base = NetworkSpec("adafm_net", variant, 3)
    task = Restoration("noise", 20, 80)
    clean = jax.random.uniform(jax.random.key(0), (args.size, args.size, 3))
    levels = np.linspace(20, 80, args.levels)
    x = jnp.stack([task.eval_input(clean, [s], index=0) for s in levels])
    cleans = jnp.broadcast_to(clean, x.shape)
    tuner = make_tuner(args.method)
    spec = tuner.tuned_spec(base)  # AdaFM runs the network with slots
    theta0 = tuner.prepare_base(base.build().init(jax.random.key(1), x[:1])["params"],
                                param_template(spec.build(), x[:1]))
    phi = perturbed(tuner.init(jax.random.key(2), theta0, spec.build(), x[:1]), 3)
    model = controllable(spec, tuner, theta0, phi, task, args.size)
    controls = jnp.linspace(0.0, 1.0, args.alphas, dtype=jnp.float32)[:, None]

    strategies = {"vmap": sweep_fn(model, "vmap")}
    strategies.update({f"map/{c}": sweep_fn(model, "map", chunk=c) for c in args.chunks})
    strategies["loop"] = sweep_fn(model, "loop")
    inputs = (x, cleans, controls)

    print(f"\nAdaFM-Net {variant} + {args.method}: {args.alphas} alphas x {args.levels} levels, "
          f"{args.size}x{args.size} RGB, {jax.devices()[0].platform}", flush=True)
    first = {name: timed(fn, *inputs) for name, fn in strategies.items()}  # compile + first run
    for name, (_, scores) in first.items():  # every strategy must compute the same PSNR/SSIM
        gap = float(np.max(np.abs(np.asarray(scores) - np.asarray(first["loop"][1]))))
        if gap > 1e-3:
            raise AssertionError(f"{name} differs from the loop by {gap}")
    times = {name: [] for name in strategies}
    names = list(strategies)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            times[name].append(timed(strategies[name], *inputs)[0])

    work = args.alphas * args.levels
    print(f"{'strategy':10s} {'first call s':>12s} {'median s':>9s} {'best s':>8s} {'alpha-img/s':>12s} {'vs loop':>8s}")
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name in names:
        print(f"{name:10s} {first[name][0]:12.2f} {medians[name]:9.3f} {min(times[name]):8.3f} "
              f"{work / medians[name]:12.2f} {medians['loop'] / medians[name]:7.2f}x")
    print(f"fastest: {min(medians, key=medians.get)}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["small", "paper"], help="AdaFM-Net variants")
    parser.add_argument("--method", default="ftn-gc16", help="tuner (ctl_jax.tuners.make_tuner name)")
    parser.add_argument("--size", type=int, default=256, help="square image size")
    parser.add_argument("--alphas", type=int, default=11, help="alphas in the grid (0..1)")
    parser.add_argument("--levels", type=int, default=4, help="degradation levels batched per image")
    parser.add_argument("--chunks", type=int, nargs="+", default=[2, 4, 6], help="lax.map batch sizes")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per strategy")
    args = parser.parse_args()
    for variant in args.variants:
        bench_variant(variant, args)


if __name__ == "__main__":
    main()
