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


def colourfulness(rgb: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Hasler and Suesstrunk (2003) colourfulness M3 of sRGB images.

    rgb: (B, 3, H, W) in [0, 1] -> (B,), on the paper's 0..255 scale
    (about 0 for greyscale, 30-60 for typical photographs, above 100 for extreme colour).
    eps, added under both square roots, keeps the gradient finite at grey (for a loss; the
    metric uses 0).
    """
    r, g, b = (rgb.float() * 255).unbind(1)
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    std = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False) + eps).sqrt()
    mean = (rg.mean(1).pow(2) + yb.mean(1).pow(2) + eps).sqrt()
    return std + 0.3 * mean


def rgb_psnr(pred_rgb: torch.Tensor, true_rgb: torch.Tensor) -> torch.Tensor:
    """PSNR of sRGB images in [0, 1] (peak 1). (B, 3, H, W) -> (B,) dB."""
    mse = (pred_rgb.float() - true_rgb.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)


def ssim(pred_rgb: torch.Tensor, true_rgb: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5) over the three sRGB
    channels. (B, 3, H, W) in [0, 1] -> (B,)."""
    from kornia.metrics import ssim as ssim_map

    return (
        ssim_map(pred_rgb.float(), true_rgb.float(), window_size=11, max_val=1.0).flatten(1).mean(1)
    )


HIST_BINS = 219
HIST_RANGE = 110.0


def ab_histograms(ab: torch.Tensor) -> torch.Tensor:
    """Per-image counts of a and b in 219 equal bins over [-110, 110] (the release's Fig. 4).

    ab: (B, 2, H, W) Lab units; values outside the range fall in the end bins.
    Returns (B, 2, 219) float64 counts.
    """
    b = ab.shape[0]
    index = ((ab.double() + HIST_RANGE) / (2 * HIST_RANGE) * HIST_BINS).floor()
    index = index.clamp(0, HIST_BINS - 1).long().flatten(2)  # (B, 2, H*W)
    offset = torch.arange(2 * b, device=ab.device).view(b, 2, 1) * HIST_BINS
    counts = torch.bincount((index + offset).flatten(), minlength=2 * b * HIST_BINS)
    return counts.view(b, 2, HIST_BINS).double()


def histogram_overlap(counts: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Intersection sum(min(p, q)) of normalised histograms, in [0, 1] (1 = identical).

    counts, reference: (..., bins) -> (...).
    """
    p = counts / counts.sum(-1, keepdim=True).clamp_min(1e-12)
    q = reference / reference.sum(-1, keepdim=True).clamp_min(1e-12)
    return torch.minimum(p, q).sum(-1)


def image_metrics(true_rgb: torch.Tensor, pred_ab: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every per-image metric of a colourisation against its colour original.

    true_rgb: (B, 3, H, W) sRGB in [0, 1]; pred_ab: (B, 2, H, W) network output in [-1, 1]
    for the L of ``true_rgb``. Returns name -> (B,) float32 (histogram overlap per image).
    """
    from vidcolour.colour import denormalise_ab, model_to_rgb, rgb_to_model

    l, true_ab = rgb_to_model(true_rgb)
    pred_rgb = model_to_rgb(l, pred_ab)
    pred_lab_ab, true_lab_ab = denormalise_ab(pred_ab.float()), denormalise_ab(true_ab)
    overlap = histogram_overlap(ab_histograms(pred_lab_ab), ab_histograms(true_lab_ab))
    return {
        "ab_l1": ab_l1(pred_lab_ab, true_lab_ab),
        "ab_psnr": ab_psnr(pred_lab_ab, true_lab_ab),
        "rgb_psnr": rgb_psnr(pred_rgb, true_rgb),
        "ssim": ssim(pred_rgb, true_rgb),
        "colourfulness": colourfulness(pred_rgb),
        "colourfulness_gt": colourfulness(true_rgb),
        "hist_overlap": overlap.mean(1).float(),
        # the picture's mean colour: over a set, their difference is its global colour cast
        "mean_a": pred_lab_ab[:, 0].flatten(1).mean(1),
        "mean_b": pred_lab_ab[:, 1].flatten(1).mean(1),
        "mean_a_gt": true_lab_ab[:, 0].flatten(1).mean(1),
        "mean_b_gt": true_lab_ab[:, 1].flatten(1).mean(1),
    }
