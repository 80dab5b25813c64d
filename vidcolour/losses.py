"""GAN objectives over the discriminator's scales (the paper's Eq. 4-6).

Each function takes one logit map per discriminator scale and returns the sum over scales
of the per-scale mean, as Eq. 6 sums V(G, D_n) over n.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vidcolour.config import GanLoss
from vidcolour.metrics import colourfulness


def d_loss(
    kind: GanLoss, real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Discriminator loss: real maps pushed to 'real', fake maps to 'fake'."""
    total = torch.zeros((), device=real[0].device)
    for r, f in zip(real, fake, strict=True):
        r, f = r.float(), f.float()
        if kind == "nonsaturating":  # -log D(real) - log(1 - D(fake)), Eq. 4
            total = total + F.softplus(-r).mean() + F.softplus(f).mean()
        elif kind == "lsgan":  # (D(real) - 1)^2 + D(fake)^2, the official release
            total = total + (r - 1).pow(2).mean() + f.pow(2).mean()
        elif kind == "hinge":
            total = total + F.relu(1 - r).mean() + F.relu(1 + f).mean()
        else:
            raise ValueError(f"no discriminator loss for gan={kind!r}")
    return total


def g_adv_loss(kind: GanLoss, fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Generator's adversarial loss on the discriminator's maps of its output."""
    total = torch.zeros((), device=fake[0].device)
    for f in fake:
        f = f.float()
        if kind == "nonsaturating":  # -log D(G(x)), Eq. 5's non-saturating form
            total = total + F.softplus(-f).mean()
        elif kind == "lsgan":
            total = total + (f - 1).pow(2).mean()
        elif kind == "hinge":
            total = total - f.mean()
        else:
            raise ValueError(f"no adversarial loss for gan={kind!r}")
    return total


def colourfulness_shortfall(fake_rgb: torch.Tensor, true_rgb: torch.Tensor) -> torch.Tensor:
    """How far each output falls short of its own original's colourfulness (Hasler and
    Suesstrunk's M3, /100), zero where it reaches it; mean over the batch.

    A variant of DDColor's colourfulness loss (1 - M3/100), which raises every picture's
    colour without bound: this one asks only for the truth's amount, so it cannot reward
    colour beyond it. (B, 3, H, W) sRGB in [0, 1] -> 0-d.
    """
    with torch.no_grad():
        target = colourfulness(true_rgb)
    return F.relu(target - colourfulness(fake_rgb, eps=1e-4)).mean() / 100
