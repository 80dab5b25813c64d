"""The paper's U-Net generator: L in, ab out.

For the paper's settings (depth 7, ngf 64) the blocks are

    encoder  e64 : e128 : e256 : e512 : e512 : e512 : e512     (256 px -> 2x2 bottleneck)
    decoder  d512 : d512 : d512 : d256 : d128 : d64            (each output concatenated with
                                                                the encoder map of its size)
    head     4x4 up-conv to 2 channels + tanh                  (back to 256 px)

Encoder blocks are 4x4 stride-2 convs, norm, LeakyReLU(0.2); the first has no norm. Decoder
blocks upsample x2 (transposed conv, or nearest + conv as in the official release), norm,
ReLU. Which norm each block gets comes from the config's norm plan (layers.NORM_PLANS).

Input size: every side must be a multiple of 2**depth (128 for the paper's net) so the skips
line up, and at least 2**depth. A plan with instance norm at the bottleneck (``in``) needs a
bottleneck of at least 2x2, i.e. sides >= 2**(depth+1) = 256 px: instance statistics of a
1x1 map are undefined. The generator raises a clear error on any other size; callers with
arbitrary frames use ``pad_to_fit`` and crop the output back (reflection padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidcolour.config import GeneratorConfig
from vidcolour.nets.base import Generator
from vidcolour.nets.layers import (
    NORM_PLANS,
    Site,
    conv_block,
    has_instance_norm,
    head_on,
    joined,
)

DECODER_DROPOUT_BLOCKS = 3  # pix2pix puts its dropout noise in the first three decoder blocks


def decoder_block(cin: int, cout: int, site: Site, config: GeneratorConfig) -> nn.Sequential:
    """A U-Net up block: x2 upsampling conv, the plan's norm for ``site``, ReLU, spectral norm
    and pix2pix's dropout as the config says. Shared by every generator of the registry."""
    return conv_block(
        cin,
        cout,
        norm=NORM_PLANS[config.norm](site),
        act="relu",
        sn=config.spectral_norm,
        upsample=config.upsample,
        dropout=config.dropout if site.index < DECODER_DROPOUT_BLOCKS else 0.0,
    )


class UNetGenerator(Generator):
    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        plan = NORM_PLANS[config.norm]
        sn = config.spectral_norm
        widths = [config.ngf * min(2**i, 8) for i in range(config.depth)]
        normalised = config.depth - 1  # normalised blocks per side: all but the first / the head

        self.encoder = nn.ModuleList()
        cin = 1
        for i, width in enumerate(widths):
            norm = None if i == 0 else plan(Site("encoder", i - 1, normalised))
            self.encoder.append(conv_block(cin, width, norm=norm, act="lrelu", sn=sn))
            cin = width
        bottleneck_norm = plan(Site("encoder", normalised - 1, normalised)) if normalised else None

        self.decoder = nn.ModuleList()
        for j, width in enumerate(reversed(widths[:-1])):
            self.decoder.append(decoder_block(cin, width, Site("decoder", j, normalised), config))
            cin = 2 * width  # the block's output concatenated with the skip of the same width
        self.head = conv_block(cin, 2, norm=None, act="tanh", sn=sn, upsample=config.upsample)

        self.size_multiple = 2**config.depth
        self.min_size = self.size_multiple * (2 if has_instance_norm(bottleneck_norm) else 1)

    def forward(self, l: torch.Tensor) -> torch.Tensor:
        """l: (B, 1, H, W) float in [-1, 1] -> ab: (B, 2, H, W) float in [-1, 1]."""
        self.check_input(l)
        skips = []
        x = l
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the decoder directly
        parts = [x]  # what the next block sees, concatenated
        for block in self.decoder:
            parts = [block(joined(parts)), skips.pop()]
        return head_on(self.head, parts)


def pad_to_fit(
    x: torch.Tensor, multiple: int, min_size: int
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B, C, H, W) on the bottom and right to a size the generator accepts.

    Reflection padding where the image is large enough, replication otherwise.
    Returns the padded tensor and the original (H, W) to crop the output back to.
    """
    h, w = x.shape[-2:]
    th = max(min_size, -(-h // multiple) * multiple)
    tw = max(min_size, -(-w // multiple) * multiple)
    if (th, tw) == (h, w):
        return x, (h, w)
    ph, pw = th - h, tw - w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)
