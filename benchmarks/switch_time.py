"""Table V of the decoupled-learning paper: the cost of switching the operator parameter.

    python benchmarks/switch_time.py                         # 640x480, 1280x720, 1920x1080
    python benchmarks/switch_time.py --sizes 64x48 --repeats 1    # quick look

Cheap-tuning model: the "realtime" DecoupleNet (128 features, bottleneck blocks) whose last
instance norm's scale and shift come from an MLP 2 -> 16 -> 128 of gamma (the official realtime
setting). A new image needs the full forward pass; a new gamma re-runs only the head (that norm
and the last conv) on the trunk's cached features. For each resolution this prints, measured in
this process: baseline [18]'s forward (gamma as input channels, the ``Conditional`` tuner), the full
forward, the switch, and full / switch (the paper's goal: switching at least 5x cheaper).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from timing import best_time

from ctl_jax import Control
from ctl_jax.nets.decouple_net import DecoupleNet, layer_names
from ctl_jax.tuners import Conditional
from ctl_jax.tuners.hyper import HyperTuner, hyper_head, hyper_trunk


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720", "1920x1080"], help="WxH")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    model = DecoupleNet("realtime")
    baseline = DecoupleNet("realtime", condition_channels=2)
    last_norm = [n for n in layer_names("realtime") if n.startswith("norm")][-1]
    tuner = HyperTuner((f"{last_norm}/*",), gamma_dim=2, hidden=16, relu=True)
    conditional = Conditional(control_dim=2)
    hyper = tuner.hyper
    small = jnp.zeros((1, 16, 16, 3))
    psi = tuner.init(jax.random.key(0), {}, model, small)
    baseline_params = conditional.init(jax.random.key(2), {}, baseline, small)
    gamma = jnp.array([0.3, 0.1])
    control = Control.vector(gamma)

    full = jax.jit(lambda x, c: tuner.apply(model, {}, psi, x, c))
    trunk = jax.jit(lambda x: hyper_trunk(model, hyper, psi, x))
    with_inputs = jax.jit(lambda x, c: conditional.apply(baseline, {}, baseline_params, x, c))
    print(f"realtime DecoupleNet, {hyper.predict[0]} predicted by an MLP 2 -> 16 -> 128; devices: {jax.devices()}")
    print(f"{'resolution':>12} | baseline [18] | full forward | switch gamma | full / switch")
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        x = jax.random.uniform(jax.random.key(3), (1, h, w, 3))
        head = jax.jit(lambda s, g: hyper_head(model, hyper, psi, s, g))
        state = jax.block_until_ready(trunk(x))
        t_switch = best_time(lambda: head(state, gamma), args.repeats)
        t_full = best_time(lambda: full(x, control), args.repeats)
        t_base = best_time(lambda: with_inputs(x, control), args.repeats)
        print(f"{size:>12} | {1e3 * t_base:10.1f} ms | {1e3 * t_full:9.1f} ms | {1e3 * t_switch:9.1f} ms | "
              f"{t_full / t_switch:8.1f}x", flush=True)
        del state


if __name__ == "__main__":
    main()
