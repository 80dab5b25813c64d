"""Fold spectral norm and batch-norm statistics into plain conv weights for inference.

After ``fold_for_inference`` a network computes what it computed in eval mode before, with
fewer operations per frame: spectral norm's W / sigma(W) becomes a stored weight, and every
BatchNorm2d that directly follows a conv becomes the conv's scale and bias (exact in eval
mode, where BN is a fixed per-channel affine map). Instance norm and the BN half of an IBN
layer depend on the input or on a channel split, so they stay as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


def fold_spectral_norm(module: nn.Module) -> nn.Module:
    """Replace every parametrized weight by its current value, in place."""
    module.eval()  # eval: the SN parametrization uses its stored u, v without a power step
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


@torch.no_grad()
def _fold_bn_into_conv(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (Cout,)
    # Conv2d weights are (Cout, Cin, k, k); ConvTranspose2d weights are (Cin, Cout, k, k).
    shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
    conv.weight.mul_(scale.view(shape))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


def _conv_norm_pairs(block: nn.Module) -> list[tuple[str, str]]:
    """The (conv, norm) attribute names of ``block`` whose norm follows its conv directly: the
    ``conv``/``norm`` of a ``layers.conv_block``, or the pairs a module lists in
    ``FOLDABLE`` (the EfficientNet-Lite trunk's)."""
    return [("conv", "norm"), *getattr(block, "FOLDABLE", ())]


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """Fold each BatchNorm2d that directly follows a conv into that conv, in place, and put an
    Identity in its place.

    Spectral norm must be folded first (a parametrized weight cannot be rescaled in place).
    """
    module.eval()
    for block in module.modules():
        for conv_name, norm_name in _conv_norm_pairs(block):
            conv = getattr(block, conv_name, None)
            norm = getattr(block, norm_name, None)
            if isinstance(conv, nn.Conv2d | nn.ConvTranspose2d) and type(norm) is nn.BatchNorm2d:
                if parametrize.is_parametrized(conv, "weight"):
                    raise ValueError("fold spectral norm before batch norm")
                _fold_bn_into_conv(conv, norm)
                setattr(block, norm_name, nn.Identity())
    return module


def fold_for_inference(module: nn.Module) -> nn.Module:
    """Spectral norm, then batch norm, folded into conv weights; the module is left in eval mode."""
    return fold_batch_norm(fold_spectral_norm(module))
