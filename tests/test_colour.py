import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from vidcolour.colour import (
    denormalise_ab,
    denormalise_l,
    lab_to_rgb,
    model_to_rgb,
    normalise_ab,
    normalise_l,
    rgb_to_lab,
    rgb_to_model,
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
