"""PatchGAN discriminators on concat(L, ab), single- or multi-scale (the paper's MD).

One discriminator is pix2pix's 70x70 PatchGAN:

    C64 (stride 2, no norm) : C128 (s2) : C256 (s2) : C512 (s1) : 4x4 conv (s1) to 1 channel

with 4x4 kernels, padding 1 and LeakyReLU(0.2); the two stride-1 layers give the 70x70
receptive field (the official release's four stride-2 blocks see 94x94). At 256 px the logit
map is 30x30. The multi-scale wrapper runs N independent discriminators on the input
average-pooled by 2**n (n = 0..N-1), the paper's Eq. 6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidcolour.config import DiscriminatorConfig
from vidcolour.nets.layers import NORM_PLANS, Site, conv_block

STRIDES = (2, 2, 2, 1)


class PatchDiscriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        plan = NORM_PLANS[config.norm]
        sn = config.spectral_norm
        widths = [config.ndf * 2**i for i in range(len(STRIDES))]
        normalised = len(STRIDES) - 1
        blocks = []
        cin = 3  # L + ab
        for i, (width, stride) in enumerate(zip(widths, STRIDES, strict=True)):
            norm = None if i == 0 else plan(Site("discriminator", i - 1, normalised))
            blocks.append(conv_block(cin, width, stride=stride, norm=norm, act="lrelu", sn=sn))
            cin = width
        blocks.append(conv_block(cin, 1, stride=1, norm=None, act="none", sn=sn))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) = concat(l, ab) in [-1, 1] -> logits (B, 1, H/8 - 2, W/8 - 2)."""
        return self.blocks(x)


class MultiScaleDiscriminator(nn.Module):
    """N independent PatchGANs; scale n sees the input average-pooled 2**n times."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        self.scales = nn.ModuleList(PatchDiscriminator(config) for _ in range(config.scales))

    def forward(self, l: torch.Tensor, ab: torch.Tensor) -> list[torch.Tensor]:
        """l: (B, 1, H, W), ab: (B, 2, H, W) in [-1, 1] -> one logit map per scale."""
        x = torch.cat([l, ab], dim=1)
        outputs = []
        for n, disc in enumerate(self.scales):
            if n:
                x = F.avg_pool2d(x, 2)
            outputs.append(disc(x))
        return outputs
