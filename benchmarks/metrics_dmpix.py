"""SSIM and PSNR: ctl_jax's own cores against dm-pix's, same process, values and jit time.

    JAX_PLATFORMS=cpu python benchmarks/metrics_dmpix.py [--batch 4 --size 256 --repeats 20]

Values: max |ours - dm-pix| over the batch, and both against scikit-image's Gaussian-window SSIM
(``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``), which the tests require to
1e-4. Times: median seconds per call of the jitted functions (the two are timed alternately, so
a busy machine slows both alike). The input pairs are noisy copies at several noise levels plus
one flat image, where the variances are tiny and dm-pix's clipping of them can show.
"""

from __future__ import annotations

import argparse

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
from skimage import metrics as skm

from ctl_jax.eval import metrics
from timing import times_of


def make_pairs(batch: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = np.stack([0.5 + 0.3 * np.sin(8 * xx + c) * np.cos(5 * yy) for c in range(3)], -1)
    clean = np.stack([np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1) for _ in range(batch)])
    clean[-1] = 0.5  # a flat image: zero variance everywhere
    sigmas = np.linspace(0.01, 0.2, batch)[:, None, None, None]
    noisy = np.clip(clean + sigmas * rng.standard_normal(clean.shape), 0, 1)
    return clean.astype(np.float32), noisy.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    a, b = map(jnp.asarray, make_pairs(args.batch, args.size))
    ours_ssim = jax.jit(metrics.ssim)
    pix_ssim = jax.jit(dm_pix.ssim)
    ours_psnr = jax.jit(metrics.psnr)
    pix_psnr = jax.jit(dm_pix.psnr)

    s_ours, s_pix = np.asarray(ours_ssim(a, b), np.float64), np.asarray(pix_ssim(a, b), np.float64)
    s_ref = np.array([skm.structural_similarity(np.float64(x), np.float64(y), gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, data_range=1.0, channel_axis=-1)
                      for x, y in zip(np.asarray(a), np.asarray(b))])
    p_ours, p_pix = np.asarray(ours_psnr(a, b)), np.asarray(pix_psnr(a, b))
    print(f"batch {args.batch} x {args.size}x{args.size}x3, float32, jit, {jax.devices()[0].platform}")
    print(f"ssim ours    {np.array2string(s_ours, precision=7)}")
    print(f"ssim dm-pix  {np.array2string(s_pix, precision=7)}")
    print(f"ssim skimage {np.array2string(s_ref, precision=7)}")
    print(f"ssim max |ours - dm-pix| {np.abs(s_ours - s_pix).max():.3g}, "
          f"max |ours - skimage| {np.abs(s_ours - s_ref).max():.3g}, "
          f"max |dm-pix - skimage| {np.abs(s_pix - s_ref).max():.3g}")
    print(f"psnr max |ours - dm-pix| {np.abs(p_ours - p_pix).max():.3g} dB")

    for name, fns in (("ssim", (ours_ssim, pix_ssim)), ("psnr", (ours_psnr, pix_psnr))):
        runs = {"ours": [], "dm-pix": []}
        for _ in range(args.repeats):  # alternate, so that load from other processes hits both
            for label, fn in zip(runs, fns):
                runs[label] += times_of(lambda: fn(a, b), 1)
        ours_t, pix_t = (float(np.median(runs[k])) for k in runs)
        print(f"{name} median per call: ours {ours_t * 1e3:.2f} ms, dm-pix {pix_t * 1e3:.2f} ms, "
              f"dm-pix / ours {pix_t / ours_t:.2f}")


if __name__ == "__main__":
    main()
