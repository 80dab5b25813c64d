"""Colourisation metrics, per image, as the paper's official release computes them.

All functions take batches and return one value per image, shape (B,) float32, so that
evaluators can report per-image values and means. ab values are in Lab units
(about [-110, 110]), not the network's [-1, 1] scaling.
"""

from __future__ import annotations

import torch


def ab_l1(pred_ab: torch.Tensor, true_ab: torch.Tensor) -> torch.Tensor:
    """Mean |delta ab| over pixels and both channels. ab: (B, 2, H, W) Lab units -> (B,)."""
    return (pred_ab.float() - true_ab.float()).abs().flatten(1).mean(1)


def ab_psnr(pred_ab: torch.Tensor, true_ab: torch.Tensor) -> torch.Tensor:
    """20 log10(255 / RMSE(ab)): the release's PSNR on the ab channels with peak 255.

    Not comparable with an RGB PSNR. ab: (B, 2, H, W) Lab units -> (B,) dB; identical inputs
    give +inf.
    """
    mse = (pred_ab.float() - true_ab.float()).pow(2).flatten(1).mean(1)
    return 20 * torch.log10(255.0 / mse.sqrt())


def colourfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler and Suesstrunk (2003) colourfulness M3 of sRGB images.

    rgb: (B, 3, H, W) in [0, 1] -> (B,), on the paper's 0..255 scale
    (about 0 for greyscale, 30-60 for typical photographs, above 100 for extreme colour).
    """
    r, g, b = (rgb.float() * 255).unbind(1)
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    std = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False)).sqrt()
    mean = (rg.mean(1).pow(2) + yb.mean(1).pow(2)).sqrt()
    return std + 0.3 * mean
