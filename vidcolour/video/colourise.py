"""The pipeline's colour stage: a batch of frames' Y' codes -> L -> ab -> Cb and Cr codes.

Colour comes from an ``AbPredictor`` (``Colouriser`` is one: the generator at a working size);
another source of colour is another implementation of the protocol. The stage works in two
steps so that the pipeline can put stages between them (stabilisation, video/stabilise.py):

    predict(luma) -> WorkingColour (ab at the working size, upright) -> chroma(...) -> Cb, Cr

Interlaced frames are two fields each, colourised apart so that the predictor never sees the
combing between them; orientation is how the frames are displayed (video/orientation.py): the
predictor sees each picture upright, while fields are the coded frame's rows and the planes
returned are on the coded grid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch

from vidcolour.colour import YCbCrCoding, grey_to_l, lab_to_chroma, site_lightness
from vidcolour.predict import resize
from vidcolour.video.orientation import Orientation


class AbPredictor(Protocol):
    """A source of colour for lightness."""

    @property
    def device(self) -> torch.device:
        """Where L is given and ab comes back."""
        ...

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The size at which a height x width picture is predicted."""
        ...

    def predict_ab(self, L: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """L: (B, 1, H, W) float32 in [0, 100] on ``device``, predicted at ``size`` (default: its
        working size). Returns ab (B, 2, H, W) float32 in Lab units."""
        ...


@dataclass(frozen=True)
class WorkingColour:
    """One batch's predicted colour at the working size, upright, before it becomes chroma.

    The batch holds ``streams`` runs of pictures one after another: one for progressive video;
    two for interlaced, every frame's top field then every bottom field.
    """

    ab: torch.Tensor  # (streams * B, 2, h, w) float32, Lab units
    y: torch.Tensor  # (streams * B, 1, h, w) float32 luma in [0, 1], what the predictor saw
    L_chroma: torch.Tensor  # (streams * B, 1, hc, wc) L at the chroma sites, coded grid
    streams: int

    def by_stream(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(ab, y) of each stream of consecutive pictures."""
        return list(zip(self.ab.chunk(self.streams), self.y.chunk(self.streams), strict=True))

    def with_ab(self, parts: list[torch.Tensor]) -> WorkingColour:
        """The same batch with each stream's ab replaced (``parts`` as ``by_stream`` gives)."""
        return replace(self, ab=torch.cat(parts))


class ColourStage:
    """Chroma for batches of frames of one video, from their Y' planes alone."""

    def __init__(
        self,
        predictor: AbPredictor,
        source: YCbCrCoding,
        target: YCbCrCoding,
        chroma_size: tuple[int, int],
        fields: bool = False,
        orientation: Orientation | None = None,
    ) -> None:
        """``source``: the input's coding; ``target``: the output's (same matrix and range; its
        bit depth); ``chroma_size``: (h, w) of the output's chroma planes. Lab to Cb/Cr runs
        eager also under ``run --compile``: its eager form is faster on the CPU than Inductor's
        code for it (docs/BENCHMARKS.md)."""
        self.predictor = predictor
        self.source = source
        self.target = target
        self.chroma_size = chroma_size
        self.fields = fields
        self.orientation = orientation or Orientation()

    @property
    def streams(self) -> int:
        """Runs of consecutive pictures in each batch: 2 for fields (``WorkingColour``)."""
        return 2 if self.fields else 1

    @property
    def _picture_chroma_size(self) -> tuple[int, int]:
        """The chroma size of one picture the predictor sees: a field is half a frame."""
        h, w = self.chroma_size
        return (h // 2, w) if self.fields else (h, w)

    @torch.inference_mode()
    def predict(self, luma: np.ndarray) -> WorkingColour:
        """luma: (B, H, W) uint8/uint16 Y' codes coded as ``source``."""
        codes = torch.from_numpy(luma).to(self.predictor.device).float()  # codes cross, not floats
        y = self.source.luma_to_unit(codes, in_place=True).unsqueeze(1)  # (B, 1, H, W), [0, 1]
        turned = self.orientation.turned((y.shape[-2], y.shape[-1]))  # as displayed
        size = self.predictor.working_size(*turned)
        if self.fields:  # both fields of every frame in one batch
            y = torch.cat([y[..., 0::2, :], y[..., 1::2, :]])
        # L at the chroma sites from the mean Y' over each site's luma samples, as chroma
        # subsampling averages colour; the predictor's L from the whole picture, upright.
        # Turned at the working size, where it is cheap (resizing commutes with the turn).
        L_chroma = site_lightness(y, self.source, self._picture_chroma_size)
        y_work = self.orientation.upright(resize(y, self.orientation.turned(size)))
        ab = self.predictor.predict_ab(grey_to_l(y_work), size)
        return WorkingColour(ab, y_work, L_chroma, self.streams)

    @torch.inference_mode()
    def chroma(self, work: WorkingColour) -> tuple[np.ndarray, np.ndarray]:
        """Cb and Cr: two (B, h, w) arrays of codes coded as ``target``, h x w =
        ``chroma_size``, on the coded grid."""
        ab = resize(self.orientation.coded(work.ab), self._picture_chroma_size)
        cb, cr = lab_to_chroma(work.L_chroma, ab, self.target)
        if self.fields:  # the fields' rows interleaved again
            b = cb.shape[0] // 2
            cb, cr = (torch.stack([c[:b], c[b:]], dim=-2).flatten(-3, -2) for c in (cb, cr))
        dtype = np.uint8 if self.target.bits == 8 else np.uint16
        top = 2**self.target.bits - 1
        return tuple(
            c.round().clamp_(0, top).squeeze(1).cpu().numpy().astype(dtype) for c in (cb, cr)
        )  # type: ignore[return-value]

    def __call__(self, luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cb and Cr for ``luma`` (see ``predict`` and ``chroma``), with nothing between."""
        return self.chroma(self.predict(luma))


def video_chroma(
    predictor: AbPredictor,
    luma: np.ndarray,
    source: YCbCrCoding,
    target: YCbCrCoding,
    chroma_size: tuple[int, int],
    fields: bool = False,
    orientation: Orientation | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cb and Cr planes for one batch of frames: ``ColourStage(...)(luma)``."""
    return ColourStage(predictor, source, target, chroma_size, fields, orientation)(luma)
