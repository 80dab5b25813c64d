"""Fold spectral norm and batch-norm statistics into plain conv weights for inference.

After ``fold_for_inference`` a network computes what it computed in eval mode before, with
fewer operations per frame: spectral norm's W / sigma(W) becomes a stored weight, and every
BatchNorm2d that directly follows a conv becomes the conv's scale and bias (exact in eval
mode, where BN is a fixed per-channel affine map). Instance norm depends on the input, so it
stays; the BN half of an IBN layer stays too, since a weights file stores what
``fold_for_inference`` leaves. ``fold_for_prediction`` goes further for the models that
predict (``open_model``, ``Colouriser``): it folds that BN half as well (``fold_ibn``),
computes narrow transposed convolutions by phases (``fold_narrow_transposed``) and runs each
conv with the activation right after it as one call on a CPU (``fuse_activations``).
"""

from __future__ import annotations

from typing import TypeGuard

import torch
from torch import nn
from torch.nn.utils import parametrize

from vidcolour.nets.layers import IBN, ConvAct, InstanceHalf, PhaseConvTranspose, post_op


def fold_spectral_norm(module: nn.Module) -> nn.Module:
    """Replace every parametrized weight by its current value, in place."""
    module.eval()  # eval: the SN parametrization uses its stored u, v without a power step
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


@torch.no_grad()
def _fold_bn_into_conv(
    conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d, first: int = 0
) -> None:
    """Fold ``bn`` into the conv's output channels ``first:`` (all of them by default)."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (Cout - first,)
    # Conv2d weights are (Cout, Cin, k, k); ConvTranspose2d weights are (Cin, Cout, k, k).
    if isinstance(conv, nn.ConvTranspose2d):
        conv.weight[:, first:].mul_(scale.view(1, -1, 1, 1))
        channels = conv.weight.shape[1]
    else:
        conv.weight[first:].mul_(scale.view(-1, 1, 1, 1))
        channels = conv.weight.shape[0]
    bias = conv.bias.clone() if conv.bias is not None else conv.weight.new_zeros(channels)
    bias[first:] = (bias[first:] - bn.running_mean) * scale + bn.bias
    conv.bias = nn.Parameter(bias)


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


def fold_ibn(module: nn.Module) -> nn.Module:
    """Fold the batch-norm half of each IBN layer that directly follows a conv into that conv's
    last output channels, and put an ``InstanceHalf`` (the instance-norm half alone) in the
    IBN's place, in place. Spectral norm must be folded first.

    The form predicts; it is never saved (a weights file keeps the IBN's own parameters). Why:
    an IBN's output is float32 under autocast, so every skip concatenation after one ran in
    float32 and every next convolution began by converting its whole input back to bfloat16.
    Here only the instance-norm half is computed in float32, and written back in the
    activations' dtype (docs/BENCHMARKS.md: the bundled generator 1.3-1.5x faster, eager, bf16).
    """
    module.eval()
    for block in module.modules():
        for conv_name, norm_name in _conv_norm_pairs(block):
            conv = getattr(block, conv_name, None)
            norm = getattr(block, norm_name, None)
            if isinstance(conv, nn.Conv2d | nn.ConvTranspose2d) and type(norm) is IBN:
                if parametrize.is_parametrized(conv, "weight"):
                    raise ValueError("fold spectral norm before an IBN layer")
                _fold_bn_into_conv(conv, norm.bnorm, first=norm.split)
                setattr(block, norm_name, InstanceHalf(norm.split, norm.inorm))
    return module


NARROW = 8  # output channels up to which a transposed convolution becomes a PhaseConvTranspose


def fold_narrow_transposed(module: nn.Module) -> nn.Module:
    """Put a ``PhaseConvTranspose`` in place of each 4x4, stride-2, padding-1 transposed
    convolution to at most ``NARROW`` channels (the U-Net's head), in place. Spectral norm
    must be folded first. Under ``torch.compile`` the bundled generator's head took a tenth of
    its time for 2% of its FLOPs as oneDNN's transposed convolution (docs/BENCHMARKS.md)."""
    for block in list(module.modules()):
        for name, child in list(block.named_children()):
            if _is_narrow_transposed(child):
                if parametrize.is_parametrized(child, "weight"):
                    raise ValueError("fold spectral norm before a transposed convolution")
                setattr(block, name, PhaseConvTranspose(child))
    return module


def _is_narrow_transposed(m: nn.Module) -> TypeGuard[nn.ConvTranspose2d]:
    return (
        isinstance(m, nn.ConvTranspose2d)
        and m.out_channels <= NARROW
        and (m.kernel_size, m.stride, m.padding) == ((4, 4), (2, 2), (1, 1))
        and (m.output_padding, m.dilation, m.groups) == ((0, 0), (1, 1), 1)
    )


def fuse_activations(module: nn.Module) -> nn.Module:
    """Put a ``ConvAct`` in place of each conv whose activation follows it directly (its
    norm folded away or absent), and an Identity in the activation's place, in place: the
    ``conv``/``norm``/``act`` of a ``layers.conv_block``, or the triples a module lists in
    ``FUSABLE``. Spectral norm must be folded first. In the lite0 encoder the ReLU6 after
    each expansion and depthwise conv, a pass over the widest maps of the network, took 29-36%
    of its eager time (docs/BENCHMARKS.md)."""
    for block in list(module.modules()):
        if isinstance(block, ConvAct):  # fused already: its conv and act are its own
            continue
        for conv_name, norm_name, act_name in (
            ("conv", "norm", "act"),
            *getattr(block, "FUSABLE", ()),
        ):
            conv = getattr(block, conv_name, None)
            norm = getattr(block, norm_name, None)
            act = getattr(block, act_name, None)
            if (
                isinstance(conv, nn.Conv2d | nn.ConvTranspose2d)
                and (norm is None or type(norm) is nn.Identity)
                and act is not None
                and post_op(act) is not None
                and conv.padding_mode == "zeros"
                and not isinstance(conv.padding, str)  # what ConvAct's call can express
            ):
                if parametrize.is_parametrized(conv, "weight"):
                    raise ValueError("fold spectral norm before fusing an activation")
                setattr(block, conv_name, ConvAct(conv, act))
                setattr(block, act_name, nn.Identity())
    return module


def fold_for_prediction(module: nn.Module) -> nn.Module:
    """``fold_for_inference``, then ``fold_ibn``, ``fold_narrow_transposed`` and
    ``fuse_activations``: the form a model predicts in."""
    return fuse_activations(fold_narrow_transposed(fold_ibn(fold_for_inference(module))))
