"""On a CUDA device: the model, bf16 autocast and the video pipeline. Skipped without one."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.video_helpers import frames, save_tiny_model
from vidcolour import Colouriser
from vidcolour.devices import autocast_dtype
from vidcolour.video.synth import write_clip

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def test_auto_device_is_cuda_and_predicts_there(model: Path) -> None:
    colouriser = Colouriser.load(model, "auto", precision="fp32", resolution=64)
    assert colouriser.device.type == "cuda"
    assert next(colouriser.generator.parameters()).device.type == "cuda"
    L = torch.rand(2, 1, 48, 80, device="cuda") * 100
    ab = colouriser.predict_ab(L)
    assert ab.device.type == "cuda" and ab.dtype == torch.float32 and ab.shape == (2, 2, 48, 80)


def test_bf16_autocast_runs_the_generator_in_bf16(model: Path) -> None:
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this CUDA device has no bf16")
    device = torch.device("cuda")
    assert autocast_dtype(device, "auto") == torch.bfloat16
    bf16 = Colouriser.load(model, "cuda", precision="bf16", resolution=64)
    fp32 = Colouriser.load(model, "cuda", precision="fp32", resolution=64)
    seen: list[torch.dtype] = []
    conv = next(m for m in bf16.generator.modules() if isinstance(m, torch.nn.Conv2d))
    hook = conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    L = torch.rand(2, 1, 64, 64, device=device) * 100
    try:
        ab = bf16.predict_ab(L)
    finally:
        hook.remove()
    assert seen == [torch.bfloat16]
    assert ab.dtype == torch.float32  # colour maths stays float32
    assert float((ab - fp32.predict_ab(L)).abs().max()) < 2.0  # Lab units: bf16 rounding only


def test_pipeline_on_cuda_matches_the_cpu(model: Path, tmp_path: Path) -> None:
    src = write_clip(tmp_path / "in.mkv", frames=6, size=(48, 64), codec="ffv1")
    outs = {}
    for device in ("cpu", "cuda"):
        colouriser = Colouriser.load(model, device, precision="fp32", resolution=64)
        outs[device] = tmp_path / f"{device}.mkv"
        report = colouriser.colourise_video(src, outs[device], codec="ffv1")
        assert report.frames == 6
    for a, b in zip(frames(outs["cpu"]), frames(outs["cuda"]), strict=True):
        assert np.array_equal(_luma(a), _luma(b))  # the luma is the input's on any device
        diff = np.abs(_chroma(a).astype(int) - _chroma(b).astype(int))
        assert diff.max() <= 3 and diff.mean() < 0.1  # float rounding differs, not the picture


def _luma(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="yuv420p")[: frame.height]


def _chroma(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="yuv420p")[frame.height :]
