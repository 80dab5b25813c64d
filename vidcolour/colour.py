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

    def chroma_to_code(self, c: torch.Tensor) -> torch.Tensor:
        """Colour difference in [-0.5, 0.5] -> Cb / Cr codes (float, not rounded)."""
        if self.full_range:
            return 2 ** (self.bits - 1) + c * (2**self.bits - 1)
        return (128 + 224 * c) * self._scale

    def chroma_to_unit(self, code: torch.Tensor) -> torch.Tensor:
        """Cb / Cr codes -> colour difference in [-0.5, 0.5] (the inverse of chroma_to_code)."""
        if self.full_range:
            c = (code - 2 ** (self.bits - 1)) / (2**self.bits - 1)
        else:
            c = (code / self._scale - 128) / 224
        return c.clamp(-0.5, 0.5)


def grey_to_l(y: torch.Tensor) -> torch.Tensor:
    """Lab L of grey pixels R' = G' = B' = y.

    y: any shape, float in [0, 1] (gamma-encoded, sRGB transfer). Returns L in [0, 100],
    float32: exactly what ``rgb_to_lab`` gives for (y, y, y), without building the triple.
    """
    with torch.autocast(y.device.type, enabled=False):
        y = _float32(y)
        linear = torch.where(y > 0.04045, ((y + 0.055) / 1.055).pow(2.4), y / 12.92)
        # CIE f(t) with t = Y / Yn; for grey under D65, Y / Yn is the linear value itself.
        delta = 6 / 29
        f = torch.where(linear > delta**3, linear.clamp_min(1e-12).pow(1 / 3),
                        linear / (3 * delta**2) + 4 / 29)  # fmt: skip
        return 116 * f - 16


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
    mean = F.avg_pool2d(y, block) if block != (1, 1) else y
    return _lightness_table(steps, y.device)[(mean * steps).round_().long()]


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
    conversion (kornia's constants: D65, the sRGB transfer, clipped to [0, 1]) written out with
    in-place steps and no channel stacking, then the Y'CbCr matrix.
    """
    kr, kb = YCBCR_MATRICES[coding.matrix]
    with torch.autocast(L.device.type, enabled=False):
        fy = _float32(L).add(16.0).div_(116.0)
        ab = _float32(ab)
        f = torch.cat([ab[:, :1] / 500.0 + fy, fy, (fy - ab[:, 1:] / 200.0).clamp_(min=0.0)], 1)
        xyz = torch.where(f > 0.2068966, f.pow(3.0), f.sub(4.0 / 29.0).div_(7.787))
        xyz *= _WHITE.to(xyz.device)
        rgb = torch.einsum("ij,bjhw->bihw", _XYZ_TO_RGB.to(xyz.device), xyz)
        low, curve = rgb * 12.92, rgb > 0.0031308  # the sRGB transfer's two pieces
        rgb = rgb.clamp_(min=0.0031308).pow_(1 / 2.4).mul_(1.055).sub_(0.055)
        rgb = torch.where(curve, rgb, low).clamp_(0.0, 1.0)
        r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
        y = kr * r + (1 - kr - kb) * g + kb * b
        cb = (b - y).div_(2 * (1 - kb))
        cr = (r - y).div_(2 * (1 - kr))
        return coding.chroma_to_code(cb), coding.chroma_to_code(cr)


_WHITE = torch.tensor([0.95047, 1.0, 1.08883])[:, None, None]  # D65, as kornia's
_XYZ_TO_RGB = torch.tensor(  # kornia's xyz_to_rgb
    [
        [3.2404813432005266, -1.5371515162713185, -0.4985363261688878],
        [-0.9692549499965682, 1.8759900014898907, 0.0415559265582928],
        [0.0556466391351772, -0.2040413383665112, 1.0573110696453443],
    ]
)


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
