"""The inference API: Colouriser.load, colourise_image, working sizes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.video_helpers import save_tiny_model
from vidcolour import Colouriser
from vidcolour.colour import rgb_to_lab
from vidcolour.colouriser import working_size
from vidcolour.errors import VidcolourError
from vidcolour.video.synth import grey_picture


@pytest.fixture(scope="module")
def colouriser(tmp_path_factory: pytest.TempPathFactory) -> Colouriser:
    path = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    return Colouriser.load(path, "cpu", resolution=64)


def test_colourise_image_keeps_size_and_lightness(colouriser: Colouriser) -> None:
    grey = grey_picture(3, 57, 91)
    rgb = colouriser.colourise_image(grey)
    assert rgb.shape == (57, 91, 3) and rgb.dtype == np.uint8
    L_in = rgb_to_lab(torch.from_numpy(np.repeat(grey[None, None], 3, 1)).float() / 255)[:, 0]
    L_out = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)[:, 0]
    # The same L up to 8-bit rounding and the gamut clip of out-of-range colours.
    assert float((L_in - L_out).abs().median()) < 1.0
    assert np.abs(rgb.astype(int) - rgb.mean(axis=2, keepdims=True)).mean() > 0.5  # has colour


def test_colourise_image_takes_pil_and_rgb(colouriser: Colouriser) -> None:
    grey = grey_picture(0, 40, 48)
    from_array = colouriser.colourise_image(grey)
    from_pil = colouriser.colourise_image(Image.fromarray(grey))
    from_rgb = colouriser.colourise_image(np.repeat(grey[..., None], 3, axis=2))
    assert np.array_equal(from_array, from_pil) and np.array_equal(from_array, from_rgb)
    with pytest.raises(VidcolourError, match="uint8"):
        colouriser.colourise_image(grey.astype(np.float32))


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(VidcolourError, match=r"'nonesuch' \(bundled models: default, lite0\)"):
        Colouriser.load("nonesuch")
    with pytest.raises(VidcolourError, match="not found"):
        Colouriser.load(tmp_path / "missing.safetensors")
    with pytest.raises(VidcolourError, match="holds no checkpoint"):
        Colouriser.load(tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(VidcolourError, match="no CUDA"):
            Colouriser.load(save_tiny_model(tmp_path / "t.safetensors"), "cuda")


def test_working_size() -> None:
    assert working_size(576, 720, 256, 128, 128) == (256, 384)  # 256 x 320 -> nearest multiples
    assert working_size(272, 640, 256, 256, 256) == (256, 512)
    assert working_size(20, 30, 256, 16, 16) == (256, 384)
    assert working_size(1080, 1920, 256, 128, 256) == (256, 512)
    assert working_size(8, 320, 256, 32, 32) == (32, 1024)  # a strip: 4 x 256 long at most
    assert working_size(320, 8, 256, 32, 32) == (1024, 32)


needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX") or "g++") is None, reason="no C++ compiler for Inductor"
)


@needs_compiler
def test_compiled_predicts_as_eager_and_pads_a_short_batch(tmp_path: Path) -> None:
    path = save_tiny_model(tmp_path / "tiny.safetensors")
    eager = Colouriser.load(path, "cpu", resolution=64, precision="fp32")
    compiled = Colouriser.load(path, "cpu", resolution=64, precision="fp32", compiled=True)
    L = torch.rand(4, 1, 48, 80) * 100
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    full = compiled.predict_ab(L)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs + 1  # compiled
    assert torch.allclose(full, eager.predict_ab(L), atol=1e-3)
    # a film's last, shorter batch is padded to the compiled shape, not compiled again
    with torch._dynamo.config.patch(error_on_recompile=True):
        short = compiled.predict_ab(L[:3])
    assert short.shape == (3, 2, 48, 80) and torch.equal(short, full[:3])


def test_compile_without_a_compiler_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    with pytest.raises(VidcolourError, match="--compile needs a C\\+\\+ compiler"):
        Colouriser.load(save_tiny_model(tmp_path / "t.safetensors"), "cpu", compiled=True)
