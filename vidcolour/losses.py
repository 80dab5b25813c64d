"""GAN objectives over the discriminator's scales (the paper's Eq. 4-6).

Each function takes one logit map per discriminator scale and returns the sum over scales
of the per-scale mean, as Eq. 6 sums V(G, D_n) over n.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vidcolour.config import GanLoss


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
