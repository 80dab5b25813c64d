import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from vidcolour import colour
from vidcolour.colour import (
    YCBCR_MATRICES,
    YCbCrCoding,
    denormalise_ab,
    denormalise_l,
    grey_to_l,
    lab_to_chroma,
    lab_to_rgb,
    model_to_rgb,
    normalise_ab,
    normalise_l,
    rgb_to_lab,
    rgb_to_model,
    site_lightness,
)


def random_rgb(b: int = 2, h: int = 17, w: int = 23) -> torch.Tensor:
    return torch.rand(b, 3, h, w)


def test_lab_round_trip() -> None:
    rgb = random_rgb()
    back = lab_to_rgb(rgb_to_lab(rgb))
    assert (back - rgb).abs().max() < 1e-4


def test_lab_agrees_with_scikit_image() -> None:
    rgb = random_rgb(b=1)
    ours = rgb_to_lab(rgb)[0].permute(1, 2, 0).numpy()
    reference = rgb2lab(rgb[0].permute(1, 2, 0).double().numpy())
    assert np.abs(ours - reference).max() < 1e-3


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [
        # Published CIE L*a*b* (D65) values of sRGB primaries and white / black.
        ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),
        ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),
        ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ],
)
def test_lab_matches_published_values(rgb: tuple, lab: tuple) -> None:
    got = rgb_to_lab(torch.tensor(rgb).view(1, 3, 1, 1)).flatten()
    assert torch.allclose(got, torch.tensor(lab), atol=0.05)


def test_colour_maths_stays_float32_under_bf16_autocast() -> None:
    rgb = random_rgb().bfloat16()
    expected = rgb_to_lab(rgb.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lab = rgb_to_lab(rgb)
        back = lab_to_rgb(lab)
    assert lab.dtype == torch.float32 and back.dtype == torch.float32
    assert torch.equal(lab, expected)


def test_normalisation_ranges_and_inverses() -> None:
    L = torch.tensor([0.0, 50.0, 100.0])
    assert torch.equal(normalise_l(L), torch.tensor([-1.0, 0.0, 1.0]))
    ab = torch.tensor([-110.0, 0.0, 110.0])
    assert torch.equal(normalise_ab(ab), torch.tensor([-1.0, 0.0, 1.0]))
    x = torch.linspace(-1, 1, 11)
    assert torch.allclose(normalise_l(denormalise_l(x)), x, atol=1e-6)
    assert torch.allclose(normalise_ab(denormalise_ab(x)), x, atol=1e-6)


def test_model_pair_round_trip() -> None:
    rgb = random_rgb()
    l, ab = rgb_to_model(rgb)
    assert l.shape == (2, 1, 17, 23) and ab.shape == (2, 2, 17, 23)
    assert l.min() >= -1 and l.max() <= 1 and ab.abs().max() <= 1
    # bf16 keeps ~3 significant digits of ab: a visible but small error
    assert (model_to_rgb(l, ab.bfloat16()) - rgb).abs().max() < 0.02
    assert (model_to_rgb(l, ab) - rgb).abs().max() < 1e-4


# ----------------------------------------------------------------- video Y'CbCr


def test_grey_to_l_is_the_lab_l_of_grey_pixels() -> None:
    y = torch.rand(1, 1, 31, 17)
    y[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 0.04045, 0.5])  # ends and the sRGB knee
    expected = rgb_to_lab(y.expand(1, 3, 31, 17))[:, :1]
    assert (grey_to_l(y) - expected).abs().max() < 1e-3


def test_grey_to_l_follows_the_cie_formula_across_both_joins() -> None:
    """grey_to_l's one power against the textbook's two (sRGB decoding, then the CIE cube
    root), in float64, on a dense grid and at the neighbours of both joins: y = 0.04045 (the
    sRGB toe) and linear = (6/29)^3 (the CIE one, y = 0.0922...)."""
    delta = 6 / 29
    cie_joint = 1.055 * delta**1.25 - 0.055  # y whose linear value is delta^3: 0.0922...
    joints = torch.tensor([0.04045, cie_joint], dtype=torch.float64)
    near = joints[:, None] + torch.arange(-3, 4, dtype=torch.float64) * 1e-7
    y = torch.cat([torch.linspace(0, 1, 200_001, dtype=torch.float64), near.flatten()])
    linear = torch.where(y > 0.04045, ((y + 0.055) / 1.055) ** 2.4, y / 12.92)
    f = torch.where(linear > delta**3, linear ** (1 / 3), linear / (3 * delta**2) + 4 / 29)
    expected = 116 * f - 16
    assert (grey_to_l(y).double() - expected).abs().max() < 2e-5


@pytest.mark.parametrize(
    ("coding", "black", "white", "neutral"),
    [
        (YCbCrCoding("bt709", full_range=False, bits=8), 16, 235, 128),
        (YCbCrCoding("bt709", full_range=True, bits=8), 0, 255, 128),
        (YCbCrCoding("bt2020", full_range=False, bits=10), 64, 940, 512),
    ],
)
def test_code_ranges(coding: YCbCrCoding, black: int, white: int, neutral: int) -> None:
    codes = torch.tensor([black - 5, black, white, white + 5], dtype=torch.float32)
    assert coding.luma_to_unit(codes).tolist() == [0.0, 0.0, 1.0, 1.0]
    L = torch.full((1, 1, 2, 2), 60.0)
    cb, cr = lab_to_chroma(L, torch.zeros(1, 2, 2, 2), coding)  # grey has no colour difference
    # within 0.01 of a code: D65 white in float32 is neutral to ~1e-5, and codes are rounded
    assert torch.allclose(cb, torch.tensor(float(neutral)), atol=0.01)
    assert torch.allclose(cr, torch.tensor(float(neutral)), atol=0.01)


@pytest.mark.parametrize("matrix", sorted(YCBCR_MATRICES))
def test_lab_to_chroma_matches_the_standard_matrix(matrix: str) -> None:
    """Cb/Cr from (L, ab) equal Cb/Cr computed from the same colour's R'G'B' by the matrix."""
    rgb = np.random.default_rng(0).uniform(0, 1, (8, 9, 3))
    lab = torch.from_numpy(rgb2lab(rgb)).permute(2, 0, 1)[None].float()
    coding = YCbCrCoding(matrix, full_range=False, bits=8)
    cb, cr = lab_to_chroma(lab[:, :1], lab[:, 1:], coding)
    kr, kb = YCBCR_MATRICES[matrix]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = kr * r + (1 - kr - kb) * g + kb * b
    expected_cb = 128 + 224 * (b - y) / (2 * (1 - kb))
    expected_cr = 128 + 224 * (r - y) / (2 * (1 - kr))
    assert np.abs(cb[0, 0].numpy() - expected_cb).max() < 0.05
    assert np.abs(cr[0, 0].numpy() - expected_cr).max() < 0.05


@pytest.mark.parametrize(
    "coding",
    [
        YCbCrCoding("bt601", full_range=False, bits=8),
        YCbCrCoding("bt709", full_range=True, bits=8),
        YCbCrCoding("bt2020", full_range=False, bits=10),
    ],
)
def test_lab_to_chroma_matches_kornias_conversion_over_the_whole_lab_box(
    coding: YCbCrCoding, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The joined transfer pieces and folded matrices against the plain form they replace
    (kornia's Lab -> R'G'B', clipped, then the matrix), out of gamut too: within 0.01 of a
    code; and the same in pieces (several frames a piece, rows of a frame a piece) as whole,
    to float rounding."""
    rng = np.random.default_rng(4)
    L = torch.from_numpy(rng.uniform(0, 100, (3, 1, 40, 50))).float()
    ab = torch.from_numpy(rng.uniform(-110, 110, (3, 2, 40, 50))).float()
    L[0, 0, 0, :3] = torch.tensor([0.0, 8.0, 100.0])  # black, the CIE knee's L, white
    ab[0, :, 0, :3] = 0.0
    rgb = lab_to_rgb(torch.cat([L, ab], 1))
    kr, kb = YCBCR_MATRICES[coding.matrix]
    y = kr * rgb[:, :1] + (1 - kr - kb) * rgb[:, 1:2] + kb * rgb[:, 2:]
    expected = (
        coding.chroma_to_code((rgb[:, 2:] - y) / (2 * (1 - kb))),
        coding.chroma_to_code((rgb[:, :1] - y) / (2 * (1 - kr))),
    )
    monkeypatch.setattr(colour, "_PIECE_SITES", 10**9)  # the batch whole
    whole = lab_to_chroma(L, ab, coding)
    for mine, plain in zip(whole, expected, strict=True):
        assert (mine - plain).abs().max() < 0.01
    for sites in (4000, 700, 2000):  # two frames a piece; 14 rows a piece; 40 rows a piece
        monkeypatch.setattr(colour, "_PIECE_SITES", sites)
        for piecewise, at_once in zip(lab_to_chroma(L, ab, coding), whole, strict=True):
            # a vector kernel's tail elements may round the last bit differently
            assert (piecewise - at_once).abs().max() < 1e-4


def test_original_luma_with_true_ab_gives_back_the_colours() -> None:
    """The pipeline's promise: keep Y', compute only Cb/Cr; with perfect ab, the colour returns."""
    rgb = np.random.default_rng(1).uniform(0, 1, (6, 7, 3))
    kr, kb = YCBCR_MATRICES["bt601"]
    y = kr * rgb[..., 0] + (1 - kr - kb) * rgb[..., 1] + kb * rgb[..., 2]
    lab = torch.from_numpy(rgb2lab(rgb)).permute(2, 0, 1)[None].float()
    coding = YCbCrCoding("bt601", full_range=True, bits=8)
    cb, cr = (
        c[0, 0].double().numpy() / 255 - 128 / 255
        for c in lab_to_chroma(lab[:, :1], lab[:, 1:], coding)
    )
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    assert np.abs(np.stack([r, g, b], -1) - rgb).max() < 1e-3


@pytest.mark.parametrize(
    ("coding", "shape", "size"),
    [
        (YCbCrCoding("bt601", full_range=False, bits=8), (2, 1, 24, 32), (12, 16)),  # 4:2:0
        (YCbCrCoding("bt709", full_range=True, bits=8), (1, 1, 24, 32), (24, 16)),  # 4:2:2
        (YCbCrCoding("bt2020", full_range=False, bits=10), (1, 1, 24, 32), (24, 32)),  # 4:4:4
        (YCbCrCoding("bt601", full_range=False, bits=8), (1, 1, 25, 33), (13, 17)),  # odd sizes
    ],
)
def test_site_lightness_from_its_table_is_the_lab_l_of_the_mean_grey(
    coding: YCbCrCoding, shape: tuple[int, ...], size: tuple[int, int]
) -> None:
    """The table-driven L at the chroma sites against skimage's Lab of the mean grey, and the
    Cb/Cr codes it gives against the same codes from that independent L: within one code."""
    top = 2**coding.bits - 1
    codes = torch.from_numpy(np.random.default_rng(2).integers(0, top + 1, shape)).float()
    y = coding.luma_to_unit(codes)
    grey = torch.nn.functional.adaptive_avg_pool2d(y, size)[:, 0].double().numpy()
    reference = rgb2lab(np.repeat(grey[..., None], 3, axis=-1))[..., 0]
    L = site_lightness(y, coding, size)
    assert L.shape == (shape[0], 1, *size)
    assert np.abs(L[:, 0].double().numpy() - reference).max() < 2e-3
    ab = torch.from_numpy(np.random.default_rng(3).uniform(-40, 40, (shape[0], 2, *size))).float()
    ours = lab_to_chroma(L, ab, coding)
    theirs = lab_to_chroma(torch.from_numpy(reference).float()[:, None], ab, coding)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.round() - b.round()).abs().max() <= 1
