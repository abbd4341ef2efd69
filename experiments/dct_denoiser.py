"""The DCT denoiser (seed TP1): the best threshold ratio r = T / sigma per noise level and threshold
kind, r learned by gradient descent through the smooth threshold, the seed's toy, and the cost.

    JAX_PLATFORMS=cpu python experiments/dct_denoiser.py --out runs/dct_denoiser

Defaults (about 4-5 minutes on the 2-core CPU): the first 6 images of Set12 (--images 12 for all),
sigma 10, 15, 25, 35, 50, 75; for each kind (hard, soft, smooth at temperature 0.3 sigma) a coarse
grid r = 0.5..4.0 step 0.5, then step 0.1 within 0.5 of the coarse best. Noise: the project's
protocol (``x + RandomState(0).randn(*x.shape) * sigma / 255`` per image, not clipped; PSNR on the
output clipped to [0, 1]). Learned r: 64 random 64x64 crops of the first 64 train400 images, 150 Adam
steps per sigma from r = 2 (batch 4, fresh noise each step, temperature 1 -> 0.02 sigma), then scored
with the hard threshold on the same test images as the sweep. The sweeps and the learning use the
separable inverse (the same linear map as the transposed convolution, to float precision, 4-5x faster
here); the timing section measures both. Prints markdown tables; with --out also writes results.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.classical import dct_denoise, find_best_ratio, flops_per_pixel, learn_ratio, learn_toy_threshold, sweep_ratio
from ctl_jax.data.images import list_images, read_image
from ctl_jax.eval.cost import xla_flops

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--test", default=str(DATA / "test" / "set12"), help="folder of grey test images")
    p.add_argument("--images", type=int, default=6, help="first N test images (sorted by name)")
    p.add_argument("--train", default=str(DATA / "train" / "train400_gray"), help="folder of grey training images")
    p.add_argument("--sigmas", default="10,15,25,35,50,75")
    p.add_argument("--kinds", default="hard,soft,smooth")
    p.add_argument("--temperature", type=float, default=0.3, help="smooth kind's temperature, in units of sigma")
    p.add_argument("--learn-steps", type=int, default=150)
    p.add_argument("--out", default=None, help="folder for results.json")
    return p.parse_args(argv)


def timed(fn, *args, repeat=5):
    fn(*args).block_until_ready()  # compile
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args).block_until_ready()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    kinds = args.kinds.split(",")
    paths = list_images(args.test)[:args.images]
    images = [read_image(p, 1) for p in paths]
    print(f"test images: {', '.join(p.name for p in paths)} from {args.test}")
    results = {"images": [p.name for p in paths], "sigmas": sigmas, "temperature": args.temperature,
               "sweep": {}, "learned": {}}

    # 1. the sweep of r
    noisy_psnr = {s: float(sweep_ratio(images, s, [0.0], "hard", inverse="separable").mean()) for s in sigmas}
    seed_r = {s: float(sweep_ratio(images, s, [2.7], "hard", inverse="separable").mean()) for s in sigmas}
    t0 = time.perf_counter()
    for kind in kinds:
        for s in sigmas:
            r, best, ratios, psnrs = find_best_ratio(images, s, kind, coarse=np.arange(0.5, 4.01, 0.5), fine_step=0.1,
                                                     temperature=args.temperature, inverse="separable")
            results["sweep"][f"{kind}/{s:g}"] = {"best_r": r, "psnr": best, "ratios": ratios.tolist(),
                                                 "psnrs": psnrs.tolist()}
            print(f"  {kind:6s} sigma={s:4g}: best r {r:.2f}  PSNR {best:.2f} dB", flush=True)
    results["sweep_seconds"] = time.perf_counter() - t0

    print("\n| sigma | noisy | " + " | ".join(f"{k}: best r | PSNR" for k in kinds) + " | hard at r=2.7 |")
    print("|---|---|" + "---|---|" * len(kinds) + "---|")
    for s in sigmas:
        cells = []
        for kind in kinds:
            row = results["sweep"][f"{kind}/{s:g}"]
            cells += [f"{row['best_r']:.1f}", f"{row['psnr']:.2f}"]
        print(f"| {s:g} | {noisy_psnr[s]:.2f} | " + " | ".join(cells) + f" | {seed_r[s]:.2f} |")
    results["noisy_psnr"] = noisy_psnr
    results["hard_r2.7_psnr"] = seed_r

    # 2. the toy
    t0 = time.perf_counter()
    toy_t, _ = learn_toy_threshold(2.4, std=8.0)
    results["toy"] = {"learned": toy_t, "target": 2.4, "seconds": time.perf_counter() - t0}
    print(f"\ntoy: learned threshold {toy_t:.4f} (target 2.4), {results['toy']['seconds']:.1f} s")

    # 3. learned r per sigma
    t0 = time.perf_counter()
    rng = np.random.RandomState(0)
    crops = []
    for p in list_images(args.train)[:64]:
        im = read_image(p, 1)
        y, x = rng.randint(0, im.shape[0] - 63), rng.randint(0, im.shape[1] - 63)
        crops.append(im[y:y + 64, x:x + 64])
    crops = np.stack(crops)
    print("\n| sigma | learned r | hard PSNR at learned r | swept best r (hard) | PSNR |")
    print("|---|---|---|---|---|")
    for s in sigmas:
        r, hist = learn_ratio(crops, s, init=2.0, steps=args.learn_steps, lr=0.05, temperatures=(1.0, 0.02), batch=4,
                              inverse="separable")
        at_r = float(sweep_ratio(images, s, [r], "hard", inverse="separable").mean())
        swept = results["sweep"].get(f"hard/{s:g}")
        results["learned"][f"{s:g}"] = {"r": r, "psnr_hard": at_r, "last10_std": float(np.std(hist[-10:]))}
        swept_cells = f"{swept['best_r']:.1f} | {swept['psnr']:.2f}" if swept else "- | -"
        print(f"| {s:g} | {r:.2f} | {at_r:.2f} | {swept_cells} |", flush=True)
    results["learn_seconds"] = time.perf_counter() - t0

    # 4. cost
    x = jnp.asarray(read_image(list_images(args.test)[-1], 1))[None]  # a 512 x 512 Set12 image
    h, w = x.shape[1:3]
    cost = {"image": [h, w]}
    for inverse in ("conv", "separable"):
        fn = jax.jit(lambda a, inv=inverse: dct_denoise(a, 25.0, 2.7, "hard", inverse=inv))
        seconds = timed(fn, x)
        cost[inverse] = {"analytic_flops_per_pixel": flops_per_pixel(8, inverse=inverse),
                         "analytic_with_border": flops_per_pixel(8, h, w, inverse=inverse),
                         "xla_flops_per_pixel": xla_flops(fn, x) / (h * w),
                         "seconds_per_megapixel": seconds / (h * w / 1e6)}
    results["cost"] = cost
    print(f"\ncost on a {h}x{w} image (N = 8, hard threshold):")
    print("| inverse | analytic FLOPs/px | with border | XLA FLOPs/px | s per megapixel |")
    print("|---|---|---|---|---|")
    for inverse in ("conv", "separable"):
        c = cost[inverse]
        print(f"| {inverse} | {c['analytic_flops_per_pixel']:.0f} | {c['analytic_with_border']:.0f} | "
              f"{c['xla_flops_per_pixel']:.0f} | {c['seconds_per_megapixel']:.2f} |")

    results["wall_seconds"] = time.perf_counter() - start
    print(f"\nwall time {results['wall_seconds']:.0f} s (sweep {results['sweep_seconds']:.0f} s, "
          f"learning {results['learn_seconds']:.0f} s)")
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))
        print(f"wrote {out / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
