"""First-step time (trace, compile, first call) and steady step time of the trainer's stages.

    python benchmarks/compile_time.py                      # paper size: stages 1 and 2, micro-batches 1 and 8
    python benchmarks/compile_time.py --unrolled           # also 8 chunks unrolled whatever their size (stage 2: ~1 min)
    python benchmarks/compile_time.py --size tiny --batch 4 --patch 32 --repeats 2   # a smoke run
    python benchmarks/compile_time.py --cpu-devices 1 2    # the rows on 1 and on 2 CPU devices, compared

Stage 1 is AdaFM-Net (``NetworkSpec("adafm_net", "paper", 3)``: nb=16, nf=64) trained at level A,
stage 2 its AdaFM tuner (kernel 5) at level B, on a ``Restoration("noise", 20, 80)`` task, batch 16 of
96x96 crops: the stages ``ctl_jax.train.supervised.compile_stage`` builds for the trainer. Rows with
more than one micro-batch use the trainer's "auto" bound (``steps.MAX_UNROLLED_EQUATIONS``: chunks
merge while the unrolled program would be too large to compile fast) and, with ``--unrolled``, the
chunks unrolled as requested. Per row it prints, all in this process, the time to trace and lower the
step, to compile it and to run its first call (the three together are what the first training step
waits for), then the median of ``--repeats`` steady steps timed in interleaved rounds (one step of every
row per round) so that load from other processes hits all rows alike. With several ``--cpu-devices``
counts (``ctl_jax.train.cpu_devices``: the trainer shards the batch over them) the script runs itself
once per count, one after the other (the count is fixed when JAX starts), and then compares every
row's steady step with the one-batch row of the same stage on the first count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.tasks import Restoration
from ctl_jax.train.loop import TrainConfig, data_parallel_mesh
from ctl_jax.train.supervised import Stage, compile_stage
from ctl_jax.tuners import make_tuner


class Row:
    """One compiled stage step and its (donated) state, ready to be timed."""

    def __init__(self, stage_number: int, micro_batches: int, unrolled: bool, args):
        self.stage_number = stage_number
        form = "unrolled" if unrolled else ("auto bound" if micro_batches > 1 else "one batch")
        self.label = f"stage {stage_number}  micro-batches {micro_batches}  {form}"
        spec = NetworkSpec("adafm_net", args.size, 3)
        task = Restoration("noise", 20, 80)
        config = TrainConfig(steps=100, batch_size=args.batch, patch_size=args.patch, lr=1e-4, micro_batches="auto")
        _, replicated, batch_sharding = data_parallel_mesh(args.batch)
        if stage_number == 1:
            stage, frozen, level = Stage.of(spec, None, task, "a", config), {}, task.level_a
        else:
            tuner = make_tuner("adafm")
            stage = Stage.of(tuner.tuned_spec(spec), tuner, task, "b", config)
            x = jnp.zeros(stage.input_shape, jnp.float32)
            theta = spec.build().init(jax.random.key(0), x)["params"]
            template = jax.eval_shape(lambda: stage.spec.build().init(jax.random.key(0), x)["params"])
            frozen, level = {"theta0": tuner.prepare_base(theta, template)}, task.level_b
        stage = dataclasses.replace(stage, micro_batches=micro_batches,
                                    max_equations=None if unrolled else stage.max_equations)
        fns = compile_stage.__wrapped__(stage, replicated, batch_sharding)  # uncached: each row compiles
        self.state = [fns.init(jax.random.key(1), frozen), None]
        self.state[1] = fns.opt_init(self.state[0])
        clean = np.asarray(jax.random.uniform(jax.random.key(5), (args.batch, args.patch, args.patch, 3)))
        self.frozen, self.arrays = frozen, (clean, np.full((args.batch, 1), level, np.float32), None)
        self.index = 0
        start = time.perf_counter()
        lowered = fns.step.lower(*self.state, frozen, self.arrays, jax.random.key(2), np.int32(0))
        self.lower_s = time.perf_counter() - start
        start = time.perf_counter()
        self.step = lowered.compile()
        self.compile_s = time.perf_counter() - start
        self.first_s = self.call()
        self.times = []

    def call(self) -> float:
        start = time.perf_counter()
        trainable, opt_state, loss = self.step(*self.state, self.frozen, self.arrays, jax.random.key(2),
                                               np.int32(self.index))
        loss.block_until_ready()
        self.state, self.index = [trainable, opt_state], self.index + 1
        return time.perf_counter() - start


def measure(args) -> dict:
    """Builds, times and prints every row in this process; returns {label: median steady step (s)}."""
    print(f"AdaFM-Net {args.size}, batch {args.batch} of {args.patch}x{args.patch}; {jax.devices()}", flush=True)
    rows = []
    for stage_number in args.stages:
        for n in args.micro_batches:
            for unrolled in ([False, True] if args.unrolled and n > 1 else [False]):
                row = Row(stage_number, n, unrolled, args)
                print(f"{row.label:42s} lower {row.lower_s:6.1f} s  compile {row.compile_s:6.1f} s  "
                      f"first call {row.first_s:5.1f} s  first step {row.lower_s + row.compile_s + row.first_s:6.1f} s",
                      flush=True)
                rows.append(row)
    for _ in range(args.repeats):
        for row in rows:
            row.times.append(row.call())
    print(f"steady step, median of {args.repeats} (interleaved rounds):")
    for row in rows:
        one = [r for r in rows if r.stage_number == row.stage_number and r.label.endswith("one batch")]
        median = statistics.median(row.times)
        ratio = f"  x{median / statistics.median(one[0].times):.2f} of one batch" if one else ""
        print(f"{row.label:42s} {median:6.2f} s{ratio}   ({' '.join(f'{t:.2f}' for t in row.times)})")
    return {row.label: statistics.median(row.times) for row in rows}


def compare_device_counts(args, argv) -> None:
    """Runs this script once per ``--cpu-devices`` count and compares the steady steps."""
    own, in_counts = [], False  # argv without "--cpu-devices N [N ...]"
    for token in argv:
        in_counts = token == "--cpu-devices" or (in_counts and token.isdigit())
        if not in_counts:
            own.append(token)
    medians = {}
    for count in args.cpu_devices:
        child = subprocess.run([sys.executable, __file__, *own, "--cpu-devices", str(count), "--json"],
                               stdout=subprocess.PIPE, text=True, check=True)
        lines = child.stdout.splitlines()
        print(f"--- {count} CPU device(s)", *[line for line in lines if not line.startswith("{")], sep="\n", flush=True)
        medians[count] = json.loads(next(line for line in lines if line.startswith("{")))
    first = args.cpu_devices[0]
    print(f"steady step against the one-batch row of the same stage on {first} CPU device(s):")
    for label in medians[first]:
        stage = label.split("  ")[0]
        base = next(m for other, m in medians[first].items() if other.startswith(stage) and other.endswith("one batch"))
        cells = "  ".join(f"{count} dev {medians[count][label]:5.2f} s x{medians[count][label] / base:.2f}"
                          for count in args.cpu_devices)
        print(f"{label:42s} {cells}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--unrolled", action="store_true", help="add rows with the chunks unrolled as requested")
    parser.add_argument("--size", default="paper", help="AdaFM-Net variant (paper: nb=16, nf=64; tiny for a smoke run)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5, help="steady steps per row (median)")
    parser.add_argument("--cpu-devices", type=int, nargs="+", help="XLA CPU device counts to run on (default: "
                        "JAX's; several: one process each, compared)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpu_devices and len(args.cpu_devices) > 1:
        return compare_device_counts(args, argv)
    if args.cpu_devices:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices[0])
    medians = measure(args)
    if args.json:
        print(json.dumps(medians))


if __name__ == "__main__":
    main()
