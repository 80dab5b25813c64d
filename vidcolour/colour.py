"""Colour core: sRGB <-> CIE Lab and the paper's network normalisation.

Every stage that touches colour (trainer, evaluator, video pipeline) goes through this
module, so the conventions live in one place:

- RGB is gamma-encoded sRGB, float in [0, 1], shape (B, 3, H, W).
- Lab is CIE L*a*b* under D65: L in [0, 100], a and b roughly in [-110, 110].
- The network sees ``l = L / 50 - 1`` in [-1, 1] and predicts ``ab / 110`` in [-1, 1]
  (the official release's scaling, REFERENCE.md §2).

Colour maths always runs in float32, also inside a bf16 autocast region: the Lab transfer
functions (cube roots, 2.4 powers) lose whole Lab units in bf16.
"""

from __future__ import annotations

import torch
from kornia.color import lab_to_rgb as _kornia_lab_to_rgb
from kornia.color import rgb_to_lab as _kornia_rgb_to_lab

L_SCALE = 50.0
AB_SCALE = 110.0


def _float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float32 else x.float()


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB to CIE Lab.

    rgb: (B, 3, H, W) float in [0, 1], any device.
    Returns (B, 3, H, W) float32: L in [0, 100], a and b in about [-110, 110].
    """
    with torch.autocast(rgb.device.type, enabled=False):
        return _kornia_rgb_to_lab(_float32(rgb))


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab to sRGB.

    lab: (B, 3, H, W), L in [0, 100], a and b in about [-110, 110].
    Returns (B, 3, H, W) float32 in [0, 1]; out-of-gamut colours are clipped.
    """
    with torch.autocast(lab.device.type, enabled=False):
        return _kornia_lab_to_rgb(_float32(lab), clip=True)


def normalise_l(L: torch.Tensor) -> torch.Tensor:
    """Lab L in [0, 100] -> network input in [-1, 1]."""
    return L / L_SCALE - 1.0


def denormalise_l(l: torch.Tensor) -> torch.Tensor:
    """Network input in [-1, 1] -> Lab L in [0, 100]."""
    return (l + 1.0) * L_SCALE


def normalise_ab(ab: torch.Tensor) -> torch.Tensor:
    """Lab ab in [-110, 110] -> network target in [-1, 1]."""
    return ab / AB_SCALE


def denormalise_ab(ab: torch.Tensor) -> torch.Tensor:
    """Network output in [-1, 1] -> Lab ab in [-110, 110]."""
    return ab * AB_SCALE


def rgb_to_model(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB to the network's (input, target) pair.

    rgb: (B, 3, H, W) float in [0, 1].
    Returns ``l`` (B, 1, H, W) and ``ab`` (B, 2, H, W), float32 in [-1, 1].
    """
    lab = rgb_to_lab(rgb)
    return normalise_l(lab[:, :1]), normalise_ab(lab[:, 1:])


def model_to_rgb(l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The network's input and output back to sRGB.

    l: (B, 1, H, W) in [-1, 1]; ab: (B, 2, H, W) in [-1, 1] (any float dtype).
    Returns (B, 3, H, W) float32 in [0, 1].
    """
    lab = torch.cat([denormalise_l(_float32(l)), denormalise_ab(_float32(ab))], dim=1)
    return lab_to_rgb(lab)
