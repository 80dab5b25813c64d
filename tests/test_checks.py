"""Checks without ground truth (vidcolour/video/checks.py): colourfulness and CDC of a stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidcolour.batch.ledger import STALE_S, new_owner, owner_alive
from vidcolour.colour import YCbCrCoding, lab_to_chroma, rgb_to_lab, ycbcr_to_rgb
from vidcolour.video.checks import TemporalChecks, js_divergence, rgb_histograms

CODING = YCbCrCoding("bt601", full_range=False, bits=8)


def _frames(n: int, cb: int, cr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    luma = np.random.default_rng(0).integers(16, 236, (n, 32, 48), dtype=np.uint8)
    return luma, np.full((n, 16, 24), cb, np.uint8), np.full((n, 16, 24), cr, np.uint8)


@pytest.mark.parametrize("coding", [CODING, YCbCrCoding("bt709", True, 10)])
def test_ycbcr_to_rgb_inverts_the_pipelines_chroma(coding: YCbCrCoding) -> None:
    rgb = torch.rand(2, 3, 8, 8)
    lab = rgb_to_lab(rgb)
    kr, kb = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}[coding.matrix]
    y = kr * rgb[:, :1] + (1 - kr - kb) * rgb[:, 1:2] + kb * rgb[:, 2:]
    top = 2**coding.bits - 1
    y_code = y * top if coding.full_range else (16 + 219 * y) * 2 ** (coding.bits - 8)
    cb, cr = lab_to_chroma(lab[:, :1], lab[:, 1:], coding)
    assert ycbcr_to_rgb(y_code, cb, cr, coding) == pytest.approx(rgb, abs=1e-4)


def test_js_divergence_bounds() -> None:
    p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert float(js_divergence(p, q)) == pytest.approx(1.0)
    assert float(js_divergence(p, p)) == 0.0
    r = torch.tensor([0.5, 0.5])
    assert 0 < float(js_divergence(p, r)) < 1
    assert float(js_divergence(p, r)) == pytest.approx(float(js_divergence(r, p)))


def test_histograms_sum_to_one_per_channel() -> None:
    hist = rgb_histograms(torch.rand(3, 3, 10, 10))
    assert hist.shape == (3, 3, 256)
    assert hist.sum(-1) == pytest.approx(torch.ones(3, 3, dtype=torch.float64))


def test_grey_steady_video_scores_zero() -> None:
    checks = TemporalChecks()
    luma, cb, cr = _frames(6, 128, 128)
    luma[:] = luma[0]  # the same picture six times
    checks.add_codes(luma[:4], cb[:4], cr[:4], CODING)
    checks.add_codes(luma[4:], cb[4:], cr[4:], CODING)  # across batches too
    assert checks.frames == 6
    assert checks.colourfulness == pytest.approx(0, abs=1e-3)
    assert checks.cdc == 0


def test_flicker_raises_cdc_and_colour_raises_colourfulness() -> None:
    steady, flicker = TemporalChecks(), TemporalChecks()
    for i in range(8):
        steady.add_codes(*_frames(1, 100, 170), CODING)
        shift = 30 if i % 2 else -30
        flicker.add_codes(*_frames(1, 100 + shift, 170 - shift), CODING)
    assert steady.cdc == 0
    assert flicker.cdc is not None and flicker.cdc > 0.1
    assert steady.colourfulness is not None and steady.colourfulness > 20


def test_one_frame_has_no_cdc() -> None:
    checks = TemporalChecks()
    checks.add_codes(*_frames(1, 128, 128), CODING)
    assert checks.cdc is None and checks.colourfulness is not None
    assert TemporalChecks().colourfulness is None


def test_large_frames_are_checked_on_a_few_rows() -> None:
    luma = np.full((2, 2160, 3840), 120, np.uint8)
    chroma = np.full((2, 1080, 1920), 140, np.uint8)
    checks = TemporalChecks()
    checks.add_codes(luma, chroma, chroma, CODING)
    small = TemporalChecks()
    small.add_codes(luma[:, :216, :384], chroma[:, :108, :192], chroma[:, :108, :192], CODING)
    assert checks.colourfulness == pytest.approx(small.colourfulness, rel=1e-4)


def test_claims_of_dead_or_silent_processes_are_not_alive() -> None:
    import os
    import time

    me = new_owner()
    assert owner_alive(me, time.time())
    assert not owner_alive(me, time.time() - STALE_S - 1)  # alive pid, stale: a reused pid
    host = me.split(":")[0]
    assert not owner_alive(f"{host}:999999999:x", time.time())  # no such process
    # this pid, another token: an earlier process with the same pid (a restarted container's)
    assert not owner_alive(f"{host}:{os.getpid()}:x", time.time())
    assert owner_alive("elsewhere:1:x", time.time())  # another host: by heartbeat alone
    assert not owner_alive("elsewhere:1:x", time.time() - STALE_S - 1)
    assert not owner_alive(None, time.time())
