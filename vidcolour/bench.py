"""``vidcolour bench``: each stage of the video pipeline alone, then all of them together.

Every figure comes from the same run on the same input, so the ratios are meaningful even on a
machine whose speed drifts between runs: pipeline efficiency = end-to-end fps / the slowest
stage's fps (1.0 means the overlap hides every other stage completely), and model FLOP/s over a
bf16 matmul's FLOP/s measured minutes apart rather than on another day.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from vidcolour import devices
from vidcolour._version import __version__
from vidcolour.colouriser import Colouriser
from vidcolour.nets import count_flops
from vidcolour.perf import matmul_flops_per_s
from vidcolour.video.codecs import Codec
from vidcolour.video.colourise import ColourStage
from vidcolour.video.pipeline import VideoOptions, VideoReport, colourise_video
from vidcolour.video.sink import CODECS, CONTAINERS, Plan, Sink, plan_output
from vidcolour.video.source import Chunk, Source
from vidcolour.video.synth import write_clip

SCHEMA = "vidcolour.bench/1"
SYNTHETIC_FRAMES, SYNTHETIC_SIZE = 200, (576, 720)  # PAL SD, the commonest archive format


@dataclass
class BenchResult:
    input: str
    frames: int
    width: int
    height: int
    working_size: tuple[int, int]
    batch_size: int
    codec: str
    crf: int | None  # the encoder settings the encode and end-to-end runs used (resolved)
    preset: str | None
    tune: str | None
    model: str
    device: str
    precision: str
    compiled: bool  # the model through torch.compile (--compile)
    model_workers: int  # threads running the generator side by side (devices.model_workers)
    decode_fps: float
    model_fps: float  # the generator alone, on batches at the working size, by model_workers
    colour_stage_fps: float  # the colour stage on one thread: L, generator, Cb/Cr
    encode_fps: float
    end_to_end_fps: float
    video_bytes_per_frame: float  # the end-to-end output's video packets over its frames
    model_gflop_per_frame: float
    model_tflops: float
    matmul_tflops: float  # bf16 (fp32 when the run is fp32) matmul, measured in this run
    model_flops_utilisation: float  # model FLOP/s / matmul FLOP/s
    pipeline_efficiency: float  # end-to-end fps / slowest stage's fps
    slowest_stage: str
    end_to_end_over_model: float  # end-to-end fps / the generator alone's
    # Share of the end-to-end run's wall time each stage was busy, in its own thread (decode,
    # predict: L and the generator, summed over the model workers, stabilise, chroma: Lab ->
    # Cb/Cr, encode): overlapped stages can sum to more than 1, up to the cores they share.
    stage_shares: dict[str, float]


@dataclass(frozen=True)
class Encoder:
    """x264/x265 settings as ``run``'s --crf, --preset and --tune take them; None: the codec's."""

    crf: int | None = None
    preset: str | None = None
    tune: str | None = None


def _timed(work: Callable[[], int]) -> float:
    """Frames per second of ``work`` (which returns how many frames it handled)."""
    start = time.perf_counter()
    frames = work()
    return frames / (time.perf_counter() - start)


def run_bench(
    colouriser: Colouriser,
    input_path: Path | None,
    *,
    batch_size: int = 8,
    codec: str = "h264",
    encoder: Encoder = Encoder(),
    model_workers: int = 0,
    max_frames: int | None = None,
    log: Callable[[str], None] = print,
) -> BenchResult:
    """Every stage of the pipeline alone, then the whole, on ``input_path`` (None: a synthetic
    PAL clip); ``encoder``: x264/x265 settings as ``run`` takes them, None for the codec's;
    ``model_workers``: as ``run --model-workers`` (0: auto), for the model alone too."""
    with tempfile.TemporaryDirectory(prefix="vidcolour-bench-") as scratch:
        work = Path(scratch)
        if input_path is None:
            height, width = SYNTHETIC_SIZE
            log(f"input: synthetic {width}x{height}, {SYNTHETIC_FRAMES} frames")
            input_path = write_clip(
                work / "synthetic.mp4", frames=SYNTHETIC_FRAMES, size=SYNTHETIC_SIZE
            )
        workers = devices.model_workers(colouriser.device, model_workers, colouriser.compiled)
        return _bench(
            colouriser, input_path, work, batch_size, codec, encoder, workers, max_frames, log
        )


def _bench(
    colouriser: Colouriser,
    input_path: Path,
    work: Path,
    batch_size: int,
    codec_name: str,
    encoder: Encoder,
    workers: int,
    max_frames: int | None,
    log: Callable[[str], None],
) -> BenchResult:
    # One piece: the stages are measured in turn on the same decoded chunks (the encode stage
    # on the colour stage's output), and every figure goes into the one result at the end.
    # Decode: what the decode thread does (frames, luma planes, batching).
    chunks = []

    def decode() -> int:
        count = 0
        with Source(input_path) as source:
            for chunk in source.chunks(batch_size):
                chunks.append(chunk)
                count += len(chunk.frames)
                if max_frames and count >= max_frames:
                    break
        return count

    decode_fps = _timed(decode)
    chunks = [c for c in chunks if c.frames]
    frames = sum(len(c.frames) for c in chunks)
    first = chunks[0].frames[0]
    codec = CODECS[codec_name]
    with Source(input_path) as source:
        plan = plan_output(first, codec, source.stream.codec_context.field_order)
    layout = plan.source
    log(f"decode: {decode_fps:.1f} fps ({frames} frames, {layout.width}x{layout.height})")

    # Model: the generator alone at the working size, then the colour stage as the pipeline
    # runs it (luma -> L at two sizes, generator, Cb/Cr codes).
    g = colouriser.generator
    size = colouriser.working_size(layout.height, layout.width)  # fields use the frame's
    per_frame = 2 if plan.fields else 1
    dev = colouriser.device
    l = torch.zeros(batch_size, 1, *size, device=dev)
    with torch.inference_mode():
        flops = count_flops(g, l[:1]) * per_frame
        for _ in range(2):
            colouriser.predict_ab(torch.zeros(batch_size, 1, *size, device=dev), size)

    batches = max(3, -(-frames * per_frame // batch_size))
    model_fps = _time_model(colouriser, size, batch_size, batches, workers) / per_frame
    log(f"model: {model_fps:.1f} fps at {size[1]}x{size[0]} ({flops / 1e9:.2f} GFLOP/frame"
        f"{f', {workers} workers' if workers > 1 else ''})")  # fmt: skip

    codes = []
    stage = ColourStage(
        colouriser,
        plan.source_coding,
        plan.target_coding,
        plan.target.chroma_size,
        plan.fields,
    )

    def colour() -> int:
        for chunk in chunks:
            codes.append(stage(chunk.luma))
        return frames

    stage(chunks[0].luma)  # warm, as the model was
    colour_fps = _timed(colour)
    log(f"colour stage: {colour_fps:.1f} fps")

    # Encode: what the encoder does (new chroma planes in, packets muxed to a file).
    encode_out = work / f"encode{codec.extension}"
    encode_fps = _timed(
        lambda: _encode(input_path, encode_out, first, plan, codec, encoder, chunks, codes)
    )
    crf, preset, tune = codec.resolve(encoder.crf, encoder.preset, encoder.tune)
    settings = "".join(
        f", {name} {value}"
        for name, value in (("crf", crf), ("preset", preset), ("tune", tune))
        if value is not None
    )
    log(f"encode ({codec_name}{settings}): {encode_fps:.1f} fps")
    chunks.clear()  # free the decoded frames before the end-to-end run
    codes.clear()

    # End to end, with the threads overlapping the three stages.
    e2e_output = work / f"e2e{codec.extension}"
    report = _end_to_end(
        colouriser,
        input_path,
        e2e_output,
        work,
        codec_name,
        encoder,
        batch_size,
        workers,
        max_frames,
    )
    e2e_fps = report.fps
    shares = {k: v / report.seconds for k, v in report.stage_seconds.items()}
    log("end to end, share of the time each stage was busy: "
        + ", ".join(f"{k} {v:.2f}" for k, v in shares.items()))  # fmt: skip
    log(f"end to end: {e2e_fps:.1f} fps")

    matmul_dtype = colouriser.dtype or torch.float32
    matmul = matmul_flops_per_s(dev, matmul_dtype)
    stages = {"decode": decode_fps, "colour": colour_fps, "encode": encode_fps}
    slowest = min(stages, key=lambda k: stages[k])
    model_flops = model_fps * flops
    return BenchResult(
        input=str(input_path),
        frames=frames,
        width=layout.width,
        height=layout.height,
        working_size=size,
        batch_size=batch_size,
        codec=codec_name,
        crf=crf,
        preset=preset,
        tune=tune,
        model=colouriser.name,
        device=_device_name(dev),
        precision=str(matmul_dtype).removeprefix("torch."),
        compiled=colouriser.compiled,
        model_workers=workers,
        decode_fps=decode_fps,
        model_fps=model_fps,
        colour_stage_fps=colour_fps,
        encode_fps=encode_fps,
        end_to_end_fps=e2e_fps,
        video_bytes_per_frame=_video_bytes(e2e_output) / report.frames,
        model_gflop_per_frame=flops / 1e9,
        model_tflops=model_flops / 1e12,
        matmul_tflops=matmul / 1e12,
        model_flops_utilisation=model_flops / matmul,
        pipeline_efficiency=e2e_fps / stages[slowest],
        slowest_stage=slowest,
        end_to_end_over_model=e2e_fps / model_fps,
        stage_shares=shares,
    )


def _time_model(
    colouriser: Colouriser,
    size: tuple[int, int],
    batch_size: int,
    batches: int,
    workers: int,
) -> float:
    """Pictures a second of the generator alone on ``batches`` random batches at ``size``.

    The median batch time, as the training MFU uses the median of its windows: robust to the
    other processes of a shared machine, like the matmul reference's best-of-windows. With
    several model workers, each times its share of the batches while the others run, each on
    its share of the threads, as in the pipeline.
    """
    dev = colouriser.device
    L = torch.rand(batch_size, 1, *size, device=dev) * 100  # (B, 1, H, W) in [0, 100]
    times: list[float] = []
    threads = max(1, torch.get_num_threads() // workers)
    failed: list[BaseException] = []

    def time_batches(count: int) -> None:
        try:
            if workers > 1:
                devices.use_threads(threads)
            for i in range(count + 1):  # the first warms this thread's pool, untimed
                start = time.perf_counter()
                colouriser.predict_ab(L, size)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)  # CPU-GPU sync point, once per batch
                if i:
                    times.append(time.perf_counter() - start)
        except BaseException as exc:  # raised again on the calling thread
            failed.append(exc)

    timers = [
        threading.Thread(target=time_batches, args=(-(-batches // workers),))
        for _ in range(workers)
    ]
    for timer in timers:
        timer.start()
    for timer in timers:
        timer.join()
    if failed:
        raise failed[0]
    return workers * batch_size / statistics.median(times)


def _encode(
    input_path: Path,
    out: Path,
    first: av.VideoFrame,
    plan: Plan,
    codec: Codec,
    encoder: Encoder,
    chunks: list[Chunk],
    codes: list[tuple[np.ndarray, np.ndarray]],
) -> int:
    """Encode the decoded ``chunks`` with the colour stage's ``codes`` to ``out``, as the
    pipeline's sink does; returns the frames written."""
    with Source(input_path) as source:
        sink = Sink(
            out,
            CONTAINERS[out.suffix],
            source,
            first,
            plan,
            codec,
            crf=encoder.crf,
            preset=encoder.preset,
            tune=encoder.tune,
            tag="bench",
            notify=lambda _: None,
        )
        frames = 0
        for chunk, (cb, cr) in zip(chunks, codes, strict=True):
            for i, frame in enumerate(chunk.frames):
                sink.write(frame, chunk.luma[i], cb[i], cr[i])
            frames += len(chunk.frames)
        sink.close()
    return frames


def _end_to_end(
    colouriser: Colouriser,
    input_path: Path,
    output: Path,
    work: Path,
    codec_name: str,
    encoder: Encoder,
    batch_size: int,
    workers: int,
    max_frames: int | None,
) -> VideoReport:
    """``run``'s whole pipeline on the input (its first ``max_frames`` frames) to ``output``."""
    if max_frames:
        head = work / f"head{input_path.suffix}"
        _copy_head(input_path, head, max_frames)
        input_path = head
    options = VideoOptions(
        codec=codec_name,
        crf=encoder.crf,
        preset=encoder.preset,
        tune=encoder.tune,
        batch_size=batch_size,
        overwrite=True,
        model_workers=workers,
    )
    return colourise_video(colouriser, input_path, output, options)


def _copy_head(src: Path, dst: Path, frames: int) -> None:
    """The first ``frames`` video packets' worth of ``src``, stream-copied."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        count = 0
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = copy
            out.mux(packet)
            count += 1
            if count >= frames:
                break


def _video_bytes(path: Path) -> int:
    """The size of ``path``'s video packets: what the encoder wrote, without audio or muxing."""
    with av.open(str(path)) as container:
        return sum(packet.size for packet in container.demux(container.streams.video[0]))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def to_json(result: BenchResult) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "vidcolour": __version__,
        "torch": torch.__version__,
        "av": av.__version__,
        **asdict(result),
    }


def write_json(result: BenchResult, path: Path) -> None:
    from vidcolour.fsutil import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_json(result), indent=2) + "\n")
