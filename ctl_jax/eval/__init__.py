"""Metrics (PSNR/SSIM on RGB and Y), filter similarity and cost accounting."""
