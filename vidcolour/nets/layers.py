"""Building blocks shared by the generator and the discriminator.

Normalisation is chosen per layer by a *norm plan*: a function from a layer's place in the
network (its ``Site``) to the kind of norm it gets. The named variants of the paper's Table I
are entries in ``NORM_PLANS``; the networks never branch on the variant's name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from torch.utils.flop_counter import conv_flop_count

LayerNorm = Literal["bn", "in", "ibn"]
Part = Literal["encoder", "decoder", "discriminator"]


@dataclass(frozen=True)
class Site:
    """A normalised block's place: number ``index`` of the ``count`` such blocks in ``part``."""

    part: Part
    index: int
    count: int

    @property
    def shallow(self) -> bool:
        """The high-resolution half (rounded up) of the part, where appearance varies most.

        Encoder and discriminator blocks get deeper as the index grows; the decoder runs the
        other way, so its last blocks are the shallow ones.
        """
        half = (self.count + 1) // 2
        if self.part == "decoder":
            return self.index >= self.count - half
        return self.index < half


def _plan_ibn(site: Site) -> LayerNorm:
    # IBN-Net (Pan et al. 2018) as the paper reads it: IN+BN channel split where appearance
    # varies (shallow layers), BN alone in deep layers to keep content discrimination.
    return "ibn" if site.shallow else "bn"


def _plan_ibn_release(site: Site) -> LayerNorm:
    # bbc/ColorGAN's "IBN" model: BN everywhere except IN in the last decoder block of G and
    # in D's second block (its first normalised one).
    last_decoder = site.part == "decoder" and site.index == site.count - 1
    first_disc = site.part == "discriminator" and site.index == 0
    return "in" if last_decoder or first_disc else "bn"


NORM_PLANS: dict[str, Callable[[Site], LayerNorm]] = {
    "bn": lambda site: "bn",
    "in": lambda site: "in",
    "ibn": _plan_ibn,
    "ibn_release": _plan_ibn_release,
}


class IBN(nn.Module):
    """IBN-a normalisation: instance norm on the first half of the channels, batch norm on the rest.

    x: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, in_ratio: float = 0.5) -> None:
        super().__init__()
        self.split = int(channels * in_ratio)
        self.inorm = nn.InstanceNorm2d(self.split, affine=True)
        self.bnorm = nn.BatchNorm2d(channels - self.split)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.split, x.shape[1] - self.split], dim=1)
        return torch.cat([self.inorm(a), self.bnorm(b)], dim=1)


class InstanceHalf(nn.Module):
    """An IBN layer for prediction, its batch-norm half folded into the conv before it
    (``fold.fold_ibn``): instance norm on the first ``split`` channels, the rest as they come.

    x: (B, C, H, W) -> (B, C, H, W), in x's dtype (IBN's is float32 under autocast). Eager and
    without autograd, the normalised channels are written into x itself: no copy of the rest;
    float32 in channels-last (how ``Colouriser`` runs it) takes ``in_place_nhwc``. Under
    ``torch.compile`` it is ``by_sums``: Inductor lowers instance norm to Welford reductions
    that vectorise poorly over a slice of channels-last channels, and in-place writes cost it
    copies (docs/BENCHMARKS.md).
    """

    def __init__(self, split: int, inorm: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.split = split
        self.inorm = inorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return self.by_sums(x)
        if x.requires_grad:
            return torch.cat([self.inorm(x[:, : self.split]).to(x.dtype), x[:, self.split :]], 1)
        nhwc = x.is_contiguous(memory_format=torch.channels_last)
        if nhwc and x.dtype == torch.float32 and not self.inorm.track_running_stats:
            return self.in_place_nhwc(x)
        x[:, : self.split] = self.inorm(x[:, : self.split]).to(x.dtype)
        return x

    def in_place_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` on float32 x in channels-last, written into x, in two passes over the
        normalised channels' statistics: their mean, subtracted in place, then the mean square
        of what is left (the textbook two-pass variance, as stable as instance norm's own).
        Instance norm itself wants those channels contiguous in NCHW: a copy there and one
        back, and a Welford reduction that vectorises poorly over a slice of channels-last
        channels (with the head's change, the bundled generator alone ran 11% faster at 576p
        on an AVX2 CPU: docs/BENCHMARKS.md, "The generator's instance norm")."""
        b, c, h, w = x.shape
        part = x[:, : self.split]
        rows = x.permute(0, 2, 3, 1).view(b, h * w, c)[..., : self.split]  # the same memory
        part.sub_((rows.sum(1) / (h * w)).view(b, -1, 1, 1))
        # each channel's centred values dotted with themselves, over the same memory
        variance = torch.linalg.vecdot(rows, rows, dim=1).div_(h * w)
        scale = torch.rsqrt(variance.add_(self.inorm.eps)).view(b, -1, 1, 1)
        weight, bias = self.inorm.weight, self.inorm.bias
        if weight is not None:
            scale = scale * weight.view(1, -1, 1, 1)
        if bias is None:
            part.mul_(scale)
        else:
            torch.addcmul(bias.view(1, -1, 1, 1), part, scale, out=part)
        return x

    def by_sums(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` as one per-channel scale and shift of the whole of x: for the first
        ``split`` channels from a mean and then a mean of squared deviations (float32), 1 and
        0 for the rest. No concatenation: Inductor lays out a concatenation's parts in its
        own order and transposes them back."""
        a = x[:, : self.split].float()
        mean = a.mean((2, 3), keepdim=True)
        variance = (a - mean).square().mean((2, 3), keepdim=True)  # biased, as instance norm's
        scale = torch.rsqrt(variance + self.inorm.eps)
        if self.inorm.weight is not None and self.inorm.bias is not None:
            scale = scale * self.inorm.weight.view(1, -1, 1, 1)
            shift = self.inorm.bias.view(1, -1, 1, 1) - mean * scale
        else:
            shift = -mean * scale
        rest = x.new_ones(x.shape[0], x.shape[1] - self.split, 1, 1, dtype=torch.float32)
        scale = torch.cat([scale, rest], dim=1)
        shift = torch.cat([shift, torch.zeros_like(rest)], dim=1)
        return (x.float() * scale + shift).to(x.dtype)


class PhaseConvTranspose(nn.Module):
    """A 4x4, stride-2, padding-1 transposed convolution computed as one 2x2 convolution to its
    four output phases and an interleave: the same sums (``fold.fold_narrow_transposed``).

    Output pixel (2i + r, 2j + s) of such a transposed convolution sees input rows i - 1, i
    (r = 0: kernel rows 3, 1) or i, i + 1 (r = 1: kernel rows 2, 0), and columns alike. So a
    2x2 convolution over the input padded by 1, with the four (r, s) kernels as 4 x Cout
    output channels, gives each phase at its own one-pixel offset. oneDNN's transposed
    convolution to few channels (the generator's head: 2) runs far below its rate for wide
    ones, its plain convolution to 4 x Cout less so (docs/BENCHMARKS.md).
    x: (B, Cin, H, W) -> (B, Cout, 2H, 2W), or a sequence of tensors whose channels together
    are Cin: the same for their concatenation, which is never made (``head_on``).
    """

    TAPS = ((3, 1), (2, 0))  # kernel rows (or columns) of output phase 0, 1, by input offset

    def __init__(self, transposed: nn.ConvTranspose2d) -> None:
        super().__init__()
        weight = transposed.weight.detach()  # (Cin, Cout, 4, 4)
        self.cout = weight.shape[1]
        kernels = [
            weight[:, :, rows][:, :, :, cols].transpose(0, 1)  # (Cout, Cin, 2, 2)
            for rows in self.TAPS
            for cols in self.TAPS
        ]
        bias = transposed.bias is not None
        self.conv = nn.Conv2d(weight.shape[0], 4 * self.cout, 2, padding=1, bias=bias)
        self.conv.weight = nn.Parameter(torch.cat(kernels).contiguous(), requires_grad=False)
        if transposed.bias is not None:
            self.conv.bias = nn.Parameter(transposed.bias.detach().repeat(4), requires_grad=False)

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        parts = [x] if isinstance(x, torch.Tensor) else list(x)
        n, _, h, w = parts[0].shape
        phases = self.conv_parts(parts).view(n, 2, 2, self.cout, h + 1, w + 1)
        rows = [
            torch.stack([phases[:, r, s, :, r : r + h, s : s + w] for s in (0, 1)], dim=-1)
            for r in (0, 1)
        ]  # each (B, Cout, H, W, 2): the columns of one row phase, interleaved
        return torch.stack(rows, dim=3).reshape(n, self.cout, 2 * h, 2 * w)

    def conv_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The 2x2 convolution of the parts' concatenation along channels, as the sum of each
        part's convolution with its channels' share of the weights: the same sums, grouped."""
        conv, start, out = self.conv, 0, None
        for part in parts:
            stop = start + part.shape[1]
            bias = conv.bias if out is None else None
            y = F.conv2d(part, conv.weight[:, start:stop], bias, conv.stride, conv.padding)
            out, start = y if out is None else out.add_(y), stop
        assert out is not None and start == conv.in_channels, "parts must make up the input"
        return out


def head_on(head: nn.Module, parts: list[torch.Tensor]) -> torch.Tensor:
    """A U-Net's ``head`` on the concatenation of ``parts`` (its last decoder block's output
    and the skip of that size), made only where the head cannot take the parts apart. A head
    in prediction form (``PhaseConvTranspose``, eager) takes them apart: at the generator's
    full resolution that concatenation is the largest tensor of a pass (50 MB for a batch of
    8 at 576p), above the size glibc serves from fresh pages by mmap, so each batch faulted
    and zeroed it anew (docs/BENCHMARKS.md)."""
    takes_parts = isinstance(getattr(head, "conv", None), PhaseConvTranspose)
    # compiled code gets the concatenation: Inductor plans its own
    if len(parts) > 1 and takes_parts and not torch.compiler.is_compiling():
        return head(parts)
    return head(joined(parts))


def joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """``parts`` concatenated along channels (one part: itself)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


# oneDNN's convolutions with a fused activation, as Inductor calls them (x86 builds of torch)
FUSED_CALLS = torch.backends.mkldnn.is_available() and all(
    hasattr(torch.ops.mkldnn, op)
    for op in ("_convolution_pointwise", "_convolution_transpose_pointwise")
)


def post_op(act: nn.Module) -> tuple[str, list[float]] | None:
    """oneDNN's name and scalars for ``act`` as a convolution's fused post-op, or None.

    Only clamps: they give the same codes whether they come before or after rounding to
    bfloat16. LeakyReLU's slope would round twice in one form and once in the other (a
    difference of one bfloat16 step), and fusing it gained nothing measurable in the bundled
    generator, whose leaky layers are its first and its deepest."""
    if type(act) is nn.ReLU:
        return "relu", []
    if type(act) is nn.ReLU6:
        return "hardtanh", [0.0, 6.0]
    return None


class ConvAct(nn.Module):
    """A convolution (plain, transposed, or one with a ``geometry`` method, as the
    EfficientNet trunk's 'same' conv) and the activation right after it, for prediction
    (``fold.fuse_activations``): on a CPU without autograd, one oneDNN call that applies the
    activation as it writes each output, instead of a second pass over the whole output in
    memory. The same sums, in the dtype autocast would give the conv; elsewhere (a GPU,
    autograd, ``torch.compile``, which fuses on its own) the two modules as they were.
    x: (B, Cin, H, W) -> the conv's output shape.
    """

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, act: nn.Module) -> None:
        super().__init__()
        found = post_op(act)
        if found is None:
            raise ValueError(f"no fused form of {type(act).__name__}")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("only a conv with numeric zero padding fuses")
        self.conv, self.act = conv, act
        self.attr, self.scalars = found

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _fused_dtype(x)
        if dtype is None:
            return self.act(self.conv(x))
        conv = self.conv
        weight = conv.weight.to(dtype)
        bias = None if conv.bias is None else conv.bias.to(dtype)
        x = x.to(dtype)
        stride, dilation = list(conv.stride), list(conv.dilation)
        if isinstance(conv, nn.ConvTranspose2d):
            return torch.ops.mkldnn._convolution_transpose_pointwise(
                x, weight, bias, list(conv.padding), list(conv.output_padding),
                stride, dilation, conv.groups, self.attr, self.scalars, "",
            )  # fmt: skip
        geometry = getattr(conv, "geometry", None)
        padding, crop = geometry(x.shape) if geometry else (conv.padding, _whole)
        y = torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, list(padding), stride, dilation, conv.groups,
            self.attr, self.scalars, "",
        )  # fmt: skip
        return crop(y)


def _whole(y: torch.Tensor) -> torch.Tensor:
    return y


def _fused_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype a ``ConvAct`` computes ``x`` in with oneDNN's fused call, or None where it
    takes the plain path."""
    if (
        not FUSED_CALLS
        or x.device.type != "cpu"
        or torch.is_grad_enabled()
        or torch.compiler.is_compiling()
    ):
        return None
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    if dtype == torch.float32:
        return dtype
    if dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return dtype
    return None


def _fused_flops(transposed: bool) -> Callable[..., int]:
    """A FLOP formula for a fused call, from its input, weight and output shapes."""

    def formula(
        x: torch.Size, w: torch.Size, *args: object, out_shape: torch.Size, **kw: object
    ) -> int:
        return conv_flop_count(list(x), list(w), list(out_shape), transposed=transposed)

    return formula


def conv_backward_flops(
    grad_out_shape: torch.Size,
    x_shape: torch.Size,
    w_shape: torch.Size,
    bias: object,
    stride: object,
    padding: object,
    dilation: object,
    transposed: bool,
    output_padding: object,
    groups: int,
    output_mask: list[bool],
    **kw: object,
) -> int:
    """A convolution's backward: each gradient asked for (input, weight) costs what the
    forward did. torch's own formula (2.13) transposes the weight's shape to count the
    weight gradient, which for a grouped convolution multiplies the work by its channels per
    group: a depthwise 3x3 of 96 channels counts 97x its forward where 2x is right, and an
    EfficientNet encoder's backward some 18 times the whole generator's forward."""
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def flop_formulas() -> dict[Any, Callable[..., int]]:
    """What ``nets.flop_counter`` adds to torch's formulas: the convolution backward above, and
    the fused calls counted as the convolutions they are (count_flops, bench's MFU). A mapping
    of one counter's, not torch's global table: a torch that ships its own formula for an op
    then neither clashes at import nor is overridden for other counters."""
    formulas: dict[Any, Callable[..., int]] = {
        torch.ops.aten.convolution_backward: conv_backward_flops
    }
    if FUSED_CALLS:
        formulas[torch.ops.mkldnn._convolution_pointwise] = _fused_flops(False)
        formulas[torch.ops.mkldnn._convolution_transpose_pointwise] = _fused_flops(True)
    return formulas


def make_norm(kind: LayerNorm, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "in":
        return nn.InstanceNorm2d(channels, affine=True)
    return IBN(channels)


def has_instance_norm(kind: LayerNorm | None) -> bool:
    return kind in ("in", "ibn")


Activation = Literal["lrelu", "relu", "tanh", "none"]


def _activation(name: Activation) -> nn.Module:
    if name == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "tanh":
        return nn.Tanh()
    return nn.Identity()


def conv_block(
    cin: int,
    cout: int,
    *,
    stride: int = 2,
    norm: LayerNorm | None,
    act: Activation,
    sn: bool,
    upsample: Literal["transpose", "nearest"] | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """A 4x4 conv with optional norm, activation and dropout, as a named Sequential.

    The children are named (``up``, ``pad``, ``conv``, ``norm``, ``act``, ``drop``) so that
    ``fold_for_inference`` can find a conv and the norm that follows it.

    - ``upsample=None``: conv with ``stride`` and padding 1 (stride 2 halves H and W).
    - ``"transpose"``: 4x4 transposed conv, stride 2, padding 1 (doubles H and W).
    - ``"nearest"``: nearest x2 then a stride-1 4x4 conv with TF-style 'same' padding
      (1 before, 2 after), as in the official release.
    """
    bias = norm is None  # a norm's affine shift makes a conv bias redundant
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    conv: nn.Conv2d | nn.ConvTranspose2d
    if upsample == "transpose":
        conv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=bias)
    elif upsample == "nearest":
        layers["up"] = nn.Upsample(scale_factor=2, mode="nearest")
        layers["pad"] = nn.ZeroPad2d((1, 2, 1, 2))
        conv = nn.Conv2d(cin, cout, 4, stride=1, padding=0, bias=bias)
    else:
        conv = nn.Conv2d(cin, cout, 4, stride=stride, padding=1, bias=bias)
    nn.init.normal_(conv.weight, 0.0, 0.02)  # pix2pix / DCGAN initialisation
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers["conv"] = spectral_norm(conv) if sn else conv
    if norm is not None:
        layers["norm"] = make_norm(norm, cout)
        for m in layers["norm"].modules():
            if isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
    if act != "none":
        layers["act"] = _activation(act)
    if dropout > 0:
        layers["drop"] = nn.Dropout(dropout)
    return nn.Sequential(layers)
