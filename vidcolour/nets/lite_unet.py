"""A U-Net on an ImageNet-trained EfficientNet-Lite encoder: L in, ab out.

The encoder knows what it is looking at (faces, sky, foliage) from ImageNet; the decoder is the
paper's: 4x4 up-convolution blocks with the config's norm plan (IBN in the shallow half) and
spectral norm, skips from the encoder's maps at each resolution, a tanh head to ab. This is how
DeOldify (ResNet encoder) and DDColor (ConvNeXt encoder) get semantic colour; the paper's
training method (IBN-SN-MD discriminators, L1 + GAN) stays around it.

For lite0 and ngf 32 at 256 px:

    L -> grey sRGB, ImageNet-normalised, 3 channels   (256)
    encoder taps  16 @128, 24 @64, 40 @32, 112 @16, 320 @8 (the bottleneck)
    decoder       d256 @16 : d128 @32 : d64 @64 : d32 @128, each concatenated with the tap of
                  its size
    head          4x4 up-conv to 2 channels + tanh    (256)

Spectral norm is applied to the decoder only: it rescales a weight by its largest singular
value, which would change the pretrained encoder's function. The encoder's initial weights are
not read here (no I/O in a network module): ``init_pretrained`` loads them when training starts,
and a weights file carries them like every other weight.

Input size: sides a multiple of 32 (five stride-2 stages), at least 32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vidcolour.config import GeneratorConfig
from vidcolour.errors import VidcolourError
from vidcolour.nets.base import Generator
from vidcolour.nets.efficientnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EfficientNetLite,
    imagenet_weights_path,
    load_trunk_weights,
)
from vidcolour.nets.generator import decoder_block
from vidcolour.nets.layers import Site, conv_block, head_on, joined

DECODER_WIDTHS = (8, 4, 2, 1)  # times ngf, at strides 16, 8, 4, 2


def grey_srgb(l: torch.Tensor) -> torch.Tensor:
    """L (B, 1, H, W) in [-1, 1] -> the sRGB value [0, 1] of a grey of that lightness, (B, 1, H, W).

    The encoder saw sRGB photographs on ImageNet; a grey pixel of lightness L* has R = G = B =
    the sRGB encoding of its luminance Y (CIE 1976 inverse, then the sRGB transfer curve).
    """
    lightness = (l.float() + 1) * 50  # L*
    fy = (lightness + 16) / 116
    y = torch.where(fy > 6 / 29, fy**3, lightness / 903.3)
    y = y.clamp(0, 1)
    return torch.where(y <= 0.0031308, 12.92 * y, 1.055 * y.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


class LiteUNetGenerator(Generator):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: GeneratorConfig, variant: str) -> None:
        super().__init__()
        self.config = config
        self.encoder = EfficientNetLite(variant, classifier=False)
        sn = config.spectral_norm
        *skip_widths, cin = self.encoder.tap_widths  # strides 2 ... 16; the bottleneck at 32
        count = len(DECODER_WIDTHS)
        self.decoder = nn.ModuleList()
        for j, (times, skip) in enumerate(zip(DECODER_WIDTHS, reversed(skip_widths), strict=True)):
            width = config.ngf * times
            self.decoder.append(decoder_block(cin, width, Site("decoder", j, count), config))
            cin = width + skip
        self.head = conv_block(cin, 2, norm=None, act="tanh", sn=sn, upsample=config.upsample)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.size_multiple = 32
        self.min_size = 32

    def pretrained_part(self) -> nn.Module:
        return self.encoder

    def forward(self, l: torch.Tensor) -> torch.Tensor:
        """l: (B, 1, H, W) float in [-1, 1] -> ab: (B, 2, H, W) float in [-1, 1]."""
        self.check_input(l)
        rgb = (grey_srgb(l) - self.mean) / self.std  # (B, 3, H, W): one grey, three normalisations
        skips, _ = self.encoder.features(rgb.to(l.dtype))
        parts = [skips.pop()]  # (B, C, H/32, W/32); then what the next block sees, concatenated
        for block in self.decoder:
            x = joined(parts)
            parts = [block(x), skips.pop().to(x.dtype)]
        return head_on(self.head, parts)


def init_pretrained(generator: Generator) -> str | None:
    """Load the initial weights of ``generator``'s pretrained part as its config says
    (``encoder_weights``); returns what was loaded (a path), or None when nothing was.

    Called when training starts from scratch, never when resuming or loading a weights file.
    """
    part = generator.pretrained_part()
    source = generator.config.encoder_weights
    if not isinstance(part, EfficientNetLite) or source == "none":
        return None
    path = imagenet_weights_path(part.variant.name) if source == "imagenet" else Path(source)
    try:
        load_trunk_weights(part, path)
    except VidcolourError as exc:
        raise VidcolourError(f"model.generator.encoder_weights: {exc}") from None
    return str(path)
