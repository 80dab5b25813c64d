"""Colour core: sRGB <-> CIE Lab and the paper's network normalisation.

Every stage that touches colour (trainer, evaluator, video pipeline) goes through this
module, so the conventions live in one place:

- RGB is gamma-encoded sRGB, float in [0, 1], shape (B, 3, H, W).
- Lab is CIE L*a*b* under D65: L in [0, 100], a and b roughly in [-110, 110].
- The network sees ``l = L / 50 - 1`` in [-1, 1] and predicts ``ab / 110`` in [-1, 1]
  (the scaling of the paper's official Keras release).

Colour maths always runs in float32, also inside a bf16 autocast region: the Lab transfer
functions (cube roots, 2.4 powers) lose whole Lab units in bf16.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.color import lab_to_rgb as _kornia_lab_to_rgb
from kornia.color import rgb_to_lab as _kornia_rgb_to_lab

L_SCALE = 50.0
AB_SCALE = 110.0


def _float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float32 else x.float()


def _power_(x: torch.Tensor, exponent: float) -> torch.Tensor:
    """x ** exponent in place, for x > 0, as 2 ** (exponent * log2 x): torch's CPU ``pow`` with
    a fractional exponent costs several times a log2 and an exp2 together (Lab -> Cb/Cr 1.7x
    faster with them: benchmarks/colour_versions.py), and the two are as exact in float32
    (within 7e-8 of the float64 power over the sRGB range, ``pow`` 4e-8)."""
    return x.log2_().mul_(exponent).exp2_()


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB to CIE Lab.

    rgb: (B, 3, H, W) float in [0, 1], any device.
    Returns (B, 3, H, W) float32: L in [0, 100], a and b in about [-110, 110].
    """
    with torch.autocast(rgb.device.type, enabled=False):
        return _kornia_rgb_to_lab(_float32(rgb))


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab to sRGB.

    lab: (B, 3, H, W), L in [0, 100], a and b in about [-110, 110].
    Returns (B, 3, H, W) float32 in [0, 1]; out-of-gamut colours are clipped.
    """
    with torch.autocast(lab.device.type, enabled=False):
        return _kornia_lab_to_rgb(_float32(lab), clip=True)


def normalise_l(L: torch.Tensor) -> torch.Tensor:
    """Lab L in [0, 100] -> network input in [-1, 1]."""
    return L / L_SCALE - 1.0


def denormalise_l(l: torch.Tensor) -> torch.Tensor:
    """Network input in [-1, 1] -> Lab L in [0, 100]."""
    return (l + 1.0) * L_SCALE


def normalise_ab(ab: torch.Tensor) -> torch.Tensor:
    """Lab ab in [-110, 110] -> network target in [-1, 1]."""
    return ab / AB_SCALE


def denormalise_ab(ab: torch.Tensor) -> torch.Tensor:
    """Network output in [-1, 1] -> Lab ab in [-110, 110]."""
    return ab * AB_SCALE


def rgb_to_model(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB to the network's (input, target) pair.

    rgb: (B, 3, H, W) float in [0, 1].
    Returns ``l`` (B, 1, H, W) and ``ab`` (B, 2, H, W), float32 in [-1, 1].
    """
    lab = rgb_to_lab(rgb)
    return normalise_l(lab[:, :1]), normalise_ab(lab[:, 1:])


def model_to_rgb(l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The network's input and output back to sRGB.

    l: (B, 1, H, W) in [-1, 1]; ab: (B, 2, H, W) in [-1, 1] (any float dtype).
    Returns (B, 3, H, W) float32 in [0, 1].
    """
    lab = torch.cat([denormalise_l(_float32(l)), denormalise_ab(_float32(ab))], dim=1)
    return lab_to_rgb(lab)


# --------------------------------------------------------------------------- video Y'CbCr
#
# Video keeps its picture as gamma-encoded luma Y' plus two colour-difference planes, often at
# half resolution. vidcolour never rebuilds full-resolution RGB: the model's L comes straight
# from the decoded Y' plane, the output keeps that plane untouched, and only Cb and Cr are
# computed, at their own resolution, from L and the predicted ab.

# Luma coefficients (Kr, Kb) of the matrices video streams declare.
YCBCR_MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}


@dataclass(frozen=True)
class YCbCrCoding:
    """How a stream's Y'CbCr codes map to [0, 1] R'G'B'."""

    matrix: str = "bt709"  # a key of YCBCR_MATRICES
    full_range: bool = False  # limited ("tv"): Y' 16-235, C 16-240 at 8 bits
    bits: int = 8

    @property
    def _scale(self) -> float:
        return float(2 ** (self.bits - 8))

    @property
    def luma_steps(self) -> int:
        """Code steps from black to white."""
        return 2**self.bits - 1 if self.full_range else 219 * 2 ** (self.bits - 8)

    def luma_to_unit(self, code: torch.Tensor, *, in_place: bool = False) -> torch.Tensor:
        """Y' codes -> [0, 1] (clipped: footroom and headroom carry no picture). ``in_place``
        reuses ``code``'s memory (a float tensor the caller made for this): the same values,
        without a full-resolution temporary per step."""
        unit = code if in_place else code.clone()
        if self.full_range:
            unit.div_(2**self.bits - 1)
        else:
            unit.sub_(16 * self._scale).div_(219 * self._scale)
        return unit.clamp_(0, 1)

    @property
    def chroma_affine(self) -> tuple[float, float]:
        """(neutral, scale): a colour difference c in [-0.5, 0.5] is the Cb / Cr code
        ``neutral + scale * c``."""
        if self.full_range:
            return float(2 ** (self.bits - 1)), float(2**self.bits - 1)
        return 128 * self._scale, 224 * self._scale

    def chroma_to_code(self, c: torch.Tensor) -> torch.Tensor:
        """Colour difference in [-0.5, 0.5] -> Cb / Cr codes (float, not rounded)."""
        neutral, scale = self.chroma_affine
        return neutral + scale * c

    def chroma_to_unit(self, code: torch.Tensor) -> torch.Tensor:
        """Cb / Cr codes -> colour difference in [-0.5, 0.5] (the inverse of chroma_to_code)."""
        neutral, scale = self.chroma_affine
        return ((code - neutral) / scale).clamp(-0.5, 0.5)


def grey_to_l(y: torch.Tensor) -> torch.Tensor:
    """Lab L of grey pixels R' = G' = B' = y.

    y: any shape, float in [0, 1] (gamma-encoded, sRGB transfer). Returns L in [0, 100],
    float32: exactly what ``rgb_to_lab`` gives for (y, y, y), without building the triple.
    """
    with torch.autocast(y.device.type, enabled=False):
        y = _float32(y)
        # CIE f(t) with t = Y / Yn; for grey under D65, Y / Yn is the linear value itself. Above
        # sRGB's toe, f = linear^(1/3) = ((y + 0.055) / 1.055)^0.8: one power instead of two
        # (L within 1e-5 of the two-power form, 1.5x faster: benchmarks/colour_versions.py).
        delta = 6 / 29
        f = _power_((y + 0.055) / 1.055, 0.8)
        # below f = delta, L = 116 (linear / (3 delta^2) + 4/29) - 16 = linear * 116 / (3 delta^2)
        dark = torch.where(y > 0.04045, f * f * f, y / 12.92).mul_(116 / (3 * delta**2))
        return torch.where(f > delta, f.mul(116).sub_(16), dark)


def site_lightness(y: torch.Tensor, coding: YCbCrCoding, size: tuple[int, int]) -> torch.Tensor:
    """Lab L at the chroma sites: ``grey_to_l`` of the mean luma over each site's samples, as
    chroma subsampling averages colour.

    y: (B, 1, H, W) luma in [0, 1] from ``coding.luma_to_unit`` (so every value is a whole
    number of code steps); size: the chroma planes' (h, w). Where each site covers a whole block
    of samples (4:2:0, 4:2:2, 4:4:4 at even sizes), the block's mean is a whole number of 1/n
    code steps, and L comes from a table over those (one lookup instead of two powers a
    pixel, the same L to 2e-5); other sizes average and convert directly.
    """
    (H, W), (h, w) = y.shape[-2:], size
    if H % h or W % w:
        return grey_to_l(F.adaptive_avg_pool2d(y, size))
    block = (H // h, W // w)
    steps = coding.luma_steps * block[0] * block[1]
    index = (_block_sum(y, block) * coding.luma_steps).round_().long()  # = mean * steps
    return _lightness_table(steps, y.device)[index]


def _block_sum(y: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Sums of y's last two dimensions over (rows, columns) blocks, as strided adds (on a
    2-core CPU 4x faster than ``avg_pool2d`` at 1080p 4:2:0: benchmarks/colour_versions.py
    --ops); for 1 x 1 blocks y itself, not a copy."""
    rows = y[..., 0 :: block[0], :]
    for i in range(1, block[0]):
        rows = rows + y[..., i :: block[0], :]
    total = rows[..., 0 :: block[1]]
    for j in range(1, block[1]):
        total = total + rows[..., j :: block[1]]
    return total


@functools.lru_cache(maxsize=8)
def _lightness_table(steps: int, device: torch.device) -> torch.Tensor:
    return grey_to_l(torch.arange(steps + 1, dtype=torch.float64).div(steps).to(device))


def lab_to_chroma(
    L: torch.Tensor, ab: torch.Tensor, coding: YCbCrCoding
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cb and Cr codes of the colour (L, ab), for a stream coded as ``coding``.

    L: (B, 1, h, w) in [0, 100] and ab: (B, 2, h, w) in Lab units, both at the chroma planes'
    resolution. Returns float32 (B, 1, h, w) Cb and Cr codes, unrounded: the caller rounds,
    clips to the code range and pairs them with the stream's own Y' plane.

    The video pipeline's hottest colour maths (a frame's every chroma site): ``lab_to_rgb``'s
    conversion (kornia's constants: D65, the sRGB transfer, clipped to [0, 1]), then the
    Y'CbCr matrix, written for eager CPU speed, where each step is a pass over memory:

    - each transfer function's two pieces (the cube and its line, the 1/2.4 power and its line)
      join without a select: ``piece(max(x, knee)) + line(min(x, knee)) - line(knee)``, equal
      to the select wherever the pieces meet at the knee (here within 1e-7). A ``torch.where``
      and its comparison cost many times an add;
    - the 3x3 matrices are scaled sums of planes, not a matrix product (which, with three
      inputs, costs more than the sums);
    - the constant offsets, D65's white and the transfer's scale fold into the matrices, and
      the constant the transfer's joint leaves on R'G'B' cancels in the colour differences.

    On the CPU it works in pieces of about ``_PIECE_SITES`` sites, so that each piece's planes
    stay in the caches from one pass to the next. Eager, it beats what ``torch.compile`` makes
    of it, or made of the plain form (docs/BENCHMARKS.md), so ``run --compile`` leaves it be.

    ``benchmarks/colour_stage_changes.py`` times it against the plain form (kornia's
    conversion, then the matrix) and reports the largest code difference between them.
    """
    with torch.autocast(L.device.type, enabled=False):
        codes = torch.empty((2, *L.shape), dtype=torch.float32, device=L.device)  # Cb, Cr
        matrix = _chroma_matrix(coding)
        sites = _PIECE_SITES if L.device.type == "cpu" else None
        for frames, rows in _pieces(L.shape, sites):
            piece = (_float32(L[frames, :, rows]), _float32(ab[frames, :, rows]))
            _lab_to_chroma(*piece, matrix, codes[:, frames, :, rows])
        return codes[0], codes[1]


_PIECE_SITES = 2**18  # a piece's planes (1 MiB each) stay in the CPU's caches between passes


def _pieces(shape: torch.Size, sites: int | None) -> list[tuple[slice, slice]]:
    """(frames, rows) slices that cover (B, C, h, w) in pieces of about ``sites`` h x w
    positions: whole frames together, or rows of one frame; one piece when ``sites`` is None."""
    batch, _, height, width = shape
    if sites is None:
        return [(slice(None), slice(None))]
    frames = max(1, sites // max(1, height * width))
    rows = height if frames > 1 else max(1, sites // width)
    return [
        (slice(i, i + frames), slice(r, r + rows))
        for i in range(0, batch, frames)
        for r in range(0, height, rows)
    ]


def _lab_to_chroma(
    L: torch.Tensor,
    ab: torch.Tensor,
    chroma: tuple[tuple[tuple[float, ...], ...], tuple[float, ...]],
    codes: torch.Tensor,
) -> None:
    """``lab_to_chroma`` of one piece, into ``codes`` (2, B, 1, h, w): Cb, Cr by ``chroma``
    (``_chroma_matrix``). Planes are stacked first, (C, B, 1, h, w): each is one block."""
    f = torch.empty((3, *L.shape), dtype=torch.float32, device=L.device)
    fy = torch.add(L, 16.0, out=f[1]).div_(116.0)
    torch.add(fy, ab[:, :1], alpha=1 / 500, out=f[0])
    torch.sub(fy, ab[:, 1:], alpha=1 / 200, out=f[2]).clamp_(min=0.0)
    # CIE f -> X/Xn, Y/Yn, Z/Zn: f^3 above the knee, (f - 4/29) / 7.787 below; the line's
    # constant and D65's white go into the matrix that follows.
    f_below = f.clamp_max(_F_KNEE)
    xyz = f.clamp_min_(_F_KNEE).pow_(3.0).add_(f_below, alpha=1 / 7.787)
    rgb = _mix(xyz, _XYZ_TO_RGB_D65, _XYZ_TO_RGB_OFFSET).clamp_(0.0, 1.0)  # linear, clipped
    # the sRGB transfer, less its constant 0.055 + 12.92 * knee (which Cb and Cr cancel)
    rgb_below = rgb.clamp_max(_SRGB_KNEE)
    rgb = _power_(rgb.clamp_min_(_SRGB_KNEE), 1 / 2.4).mul_(1.055).add_(rgb_below, alpha=12.92)
    _mix(rgb, *chroma, out=codes)


def _mix(
    planes: torch.Tensor,
    matrix: tuple[tuple[float, ...], ...],
    offset: tuple[float, ...],
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``matrix @ planes + offset`` over the first dimension, one scaled sum a row: planes
    (C, ...), matrix R rows of C floats, offset R floats; returns (R, ...), in ``out`` if
    given."""
    if out is None:
        out = torch.empty_like(planes[: len(matrix)])
    for plane, row, constant in zip(out, matrix, offset, strict=True):
        torch.mul(planes[0], row[0], out=plane)
        for j in range(1, len(row)):
            plane.add_(planes[j], alpha=row[j])
        plane.add_(constant)
    return out


def _chroma_matrix(
    coding: YCbCrCoding,
) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]:
    """Cb and Cr codes from the R'G'B' that ``lab_to_chroma`` makes, for ``_mix``: (rows of
    weights, offsets). That R'G'B' is the plain transfer's output plus a constant, which the
    weights cancel (each row sums to zero); the offsets are the neutral code."""
    kr, kb = YCBCR_MATRICES[coding.matrix]
    kg = 1 - kr - kb
    neutral, scale = coding.chroma_affine
    cb = (-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5)
    cr = (0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr)))
    return (tuple(scale * w for w in cb), tuple(scale * w for w in cr)), (neutral, neutral)


_WHITE = (0.95047, 1.0, 1.08883)  # D65, as kornia's
_XYZ_TO_RGB = (  # kornia's xyz_to_rgb
    (3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
    (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
    (0.0556466391351772, -0.2040413383665112, 1.0573110696453443),
)
_F_KNEE = 0.2068966  # kornia's threshold for 6/29
_SRGB_KNEE = 0.0031308
# lab_to_chroma's joined f^-1 is the true one plus knee / 7.787 (exactly above the knee, to
# 5e-8 below): the matrix takes D65's white, its offset takes that constant off.
_XYZ_TO_RGB_D65 = tuple(
    tuple(m * w for m, w in zip(row, _WHITE, strict=True)) for row in _XYZ_TO_RGB
)
_XYZ_TO_RGB_OFFSET = tuple(-sum(row) * _F_KNEE / 7.787 for row in _XYZ_TO_RGB_D65)


def ycbcr_to_rgb(
    y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor, coding: YCbCrCoding
) -> torch.Tensor:
    """R'G'B' of Y'CbCr codes (the inverse of the matrix ``lab_to_chroma`` applies).

    y, cb, cr: (B, 1, h, w) codes at one resolution, coded as ``coding``. Returns
    (B, 3, h, w) float32 in [0, 1] (clipped).
    """
    kr, kb = YCBCR_MATRICES[coding.matrix]
    luma = coding.luma_to_unit(_float32(y))
    b = luma + 2 * (1 - kb) * coding.chroma_to_unit(_float32(cb))
    r = luma + 2 * (1 - kr) * coding.chroma_to_unit(_float32(cr))
    g = (luma - kr * r - kb * b) / (1 - kr - kb)
    return torch.cat([r, g, b], dim=1).clamp(0, 1)
