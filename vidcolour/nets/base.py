"""What the rest of vidcolour may rely on from a generator, whichever the architecture.

A generator is an ``nn.Module`` with

- ``config``: the GeneratorConfig that rebuilds it (saved in every weights file);
- ``forward(l)``: L ``(B, 1, H, W)`` float in [-1, 1] (Lab L / 50 - 1) -> ab ``(B, 2, H, W)``
  float in [-1, 1] (Lab ab / 110), the same H and W;
- ``size_multiple`` and ``min_size``: H and W must be multiples of the one and at least the other,
  otherwise ``forward`` raises ValueError (callers resize, or pad with ``pad_to_fit``);
- eval mode for inference; ``fold_for_inference`` may fold its spectral and batch norms;
- ``pretrained_part()``: the submodule that starts from pretrained weights, or None.

Nothing else (its layers, its encoder) is part of the contract.
"""

from __future__ import annotations

import torch
from torch import nn

from vidcolour.config import GeneratorConfig


class Generator(nn.Module):
    config: GeneratorConfig
    size_multiple: int
    min_size: int

    def check_input(self, l: torch.Tensor) -> None:
        if l.ndim != 4 or l.shape[1] != 1:
            raise ValueError(f"generator expects L as (B, 1, H, W), got {tuple(l.shape)}")
        h, w = l.shape[-2:]
        m, s = self.size_multiple, self.min_size
        if h % m or w % m or h < s or w < s:
            raise ValueError(
                f"generator input must be at least {s}x{s} with sides a multiple of {m}, "
                f"got {h}x{w}; pad with vidcolour.nets.pad_to_fit"
            )

    def pretrained_part(self) -> nn.Module | None:
        """The submodule whose initial weights come from elsewhere (an ImageNet encoder), if any."""
        return None
