"""`vidcolour eval`: metrics against independent computations, identities, CLI, perceptual nets."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from skimage.color import rgb2lab

from tests.helpers import small_config, synthetic_photo, write_photos
from vidcolour.cli import main
from vidcolour.colour import model_to_rgb, rgb_to_model
from vidcolour.config import DataConfig
from vidcolour.data import ImageDataset, collate
from vidcolour.errors import VidcolourError
from vidcolour.evaluate import (
    Candidate,
    Extras,
    eval_loader,
    evaluate_candidates,
    grey_baseline,
    mean_baseline,
)
from vidcolour.metrics import image_metrics
from vidcolour.perceptual import VGG19, EfficientNetLite0, frechet_distance
from vidcolour.train import RunArgs, train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Colour images of different sizes and aspect ratios."""
    folder = tmp_path_factory.mktemp("evalphotos")
    for i, (w, h) in enumerate([(120, 90), (64, 64), (150, 100), (80, 130)]):
        Image.fromarray(synthetic_photo(i + 10, 160)).resize((w, h)).save(folder / f"p{i}.png")
    return folder


def _independent_grey_metrics(folder: Path, size: int, resize: str) -> tuple[float, float]:
    """ab-L1 and ab-PSNR of ab = 0 by scikit-image, resizing as the evaluator is documented to."""
    l1s, psnrs = [], []
    for path in sorted(folder.glob("*.png")):
        im = Image.open(path).convert("RGB")
        w, h = im.size
        if resize == "crop":  # short side to size, then the centre square
            w, h = max(size, round(w * size / min(w, h))), max(size, round(h * size / min(w, h)))
            im = im.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=2.0)
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
        else:
            im = im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
        ab = rgb2lab(np.asarray(im) / 255.0)[..., 1:]
        l1s.append(np.abs(ab).mean())
        psnrs.append(20 * np.log10(255 / np.sqrt((ab**2).mean())))
    return float(np.mean(l1s)), float(np.mean(psnrs))


@pytest.mark.parametrize("resize", ["stretch", "crop"])
def test_grey_baseline_matches_scikit_image(photos: Path, resize: str) -> None:
    paths = sorted(photos.glob("*.png"))
    result = evaluate_candidates([grey_baseline()], paths, 64, CPU, Extras(), resize=resize)
    mean = result["colourisers"][0]["mean"]
    l1, psnr = _independent_grey_metrics(photos, 64, resize)
    assert mean["ab_l1"] == pytest.approx(l1, rel=0.005)
    assert mean["ab_psnr"] == pytest.approx(psnr, rel=0.005)
    assert result["dataset"]["images"] == 4
    assert result["dataset"]["resize"] == resize


def _oracle(paths: list[Path], size: int) -> Candidate:
    """A colouriser that returns each image's own ab, in evaluation order."""
    dataset = ImageDataset(paths, size, DataConfig(), train=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=collate)
    truths = iter([rgb_to_model(rgb.float() / 255)[1] for rgb, _ in loader])
    return Candidate("oracle", "model", lambda l: next(truths))


def test_an_image_against_itself(photos: Path) -> None:
    paths = sorted(photos.glob("*.png"))
    result = evaluate_candidates([_oracle(paths, 64)], paths, 64, CPU, Extras())
    mean = result["colourisers"][0]["mean"]
    assert mean["ab_l1"] == 0
    assert mean["hist_overlap"] == pytest.approx(1.0)
    assert mean["dataset_hist_overlap"] == pytest.approx(1.0)
    assert mean["colourfulness_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert mean["ssim"] == pytest.approx(1.0, abs=1e-3)
    assert mean["ab_psnr"] == float("inf")


def test_grey_has_zero_colourfulness_and_poor_overlap(photos: Path) -> None:
    rgb = torch.from_numpy(synthetic_photo(3, 64)).permute(2, 0, 1)[None].float() / 255
    values = image_metrics(rgb, torch.zeros(1, 2, 64, 64))
    assert values["colourfulness"].item() == pytest.approx(0.0, abs=0.5)
    assert values["hist_overlap"].item() < 0.5


def test_mean_baseline_predicts_the_given_constant() -> None:
    baseline = mean_baseline(torch.tensor([11.0, -22.0]))
    ab = baseline.predict(torch.zeros(2, 1, 4, 4))
    assert ab.shape == (2, 2, 4, 4)
    assert torch.allclose(ab[:, 0], torch.full((2, 4, 4), 0.1))
    assert torch.allclose(ab[:, 1], torch.full((2, 4, 4), -0.2))


def _fake_vgg19_file(path: Path) -> None:
    """A state dict with torchvision's vgg19 key names (and its classifier), random values."""
    state = VGG19().state_dict()
    state["classifier.0.weight"] = torch.zeros(4096, 25088)
    torch.save(state, path)


def test_cli_eval_writes_json_and_plots(photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(
        small_config("bn", "train.image_size=64"),
        RunArgs(str(photos), run, max_steps=2, device="cpu"),
    )
    out = tmp_path / "eval.json"
    vgg = tmp_path / "vgg19.pth"
    _fake_vgg19_file(vgg)
    args = ["eval", "--model", str(run), "--baseline", "grey", "--baseline", "mean", "--data",
            str(photos), "--size", "64", "--json", str(out), "--plots", str(tmp_path / "plots"),
            "--vgg19-weights", str(vgg)]  # fmt: skip
    result = CliRunner().invoke(main, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "notice" not in result.output
    data = json.loads(out.read_text())
    assert data["schema"] == "vidcolour.eval/1"
    assert [c["kind"] for c in data["colourisers"]] == ["model", "baseline", "baseline"]
    model = data["colourisers"][0]
    assert model["name"] == "run" and len(model["sha256"]) == 64
    assert len(model["per_image"]) == 4 and len(model["histograms"]["a"]) == 219
    for key in ("ab_l1", "ab_psnr", "rgb_psnr", "ssim", "colourfulness_ratio", "hist_overlap",
                "vgg19_perceptual", "effnet_lite0_perceptual", "effnet_lite0_frechet"):  # fmt: skip
        assert np.isfinite(model["mean"][key]), key
    for name in ("histograms.png", "samples.png", "learning_curves.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000


def test_cli_resize_crop(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "crop.json"
    args = ["eval", "--baseline", "grey", "--data", str(photos), "--size", "64", "--no-effnet",
            "--resize", "crop", "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["dataset"]["resize"] == "crop"
    l1, _ = _independent_grey_metrics(photos, 64, "crop")
    assert data["colourisers"][0]["mean"]["ab_l1"] == pytest.approx(l1, rel=0.005)


def test_missing_vgg19_weights_is_a_notice(photos: Path) -> None:
    result = CliRunner().invoke(
        main, ["eval", "--baseline", "grey", "--data", str(photos), "--size", "64", "--no-effnet"]
    )
    assert result.exit_code == 0, result.output
    notices = [line for line in result.output.splitlines() if line.startswith("notice")]
    assert len(notices) == 1 and "VGG19" in notices[0]
    assert "ab-L1" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "grey", "--vgg19-weights", "missing.pth"], "VGG19 weights not found"),
        (["--model", "no_such_run"], "unknown model 'no_such_run'"),
    ],
)
def test_eval_errors_are_one_line(photos: Path, args: list[str], message: str) -> None:
    if "--data" not in args:
        args = [*args, "--data", str(photos)]
    result = CliRunner().invoke(main, ["eval", "--no-effnet", *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_vgg19_rejects_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(
        VidcolourError, match=r"is not VGG19 weights: 'features\.0\.weight' is missing"
    ):
        VGG19.load(path)


def test_effnet_lite0_distances_are_zero_for_identical_images(tmp_path: Path) -> None:
    net = EfficientNetLite0.load()
    rgb = torch.rand(3, 3, 64, 64)
    taps, pooled, logits = net(rgb)
    assert [t.shape[-1] for t in taps] == [112, 56, 28, 14, 7]
    assert pooled.shape == (3, 1280) and logits.shape == (3, 1000)
    scale = float(torch.cov(pooled.double().T).trace())
    assert frechet_distance(pooled, pooled) <= 1e-6 * scale
    other = net(torch.rand(3, 3, 64, 64))[1]
    assert frechet_distance(pooled, other) > 1e-3 * scale


def test_frechet_distance_of_shifted_gaussians() -> None:
    a = torch.randn(4000, 3, dtype=torch.float64)
    b = a + torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64)
    assert frechet_distance(a, b) == pytest.approx(9.0, rel=1e-6)  # same covariance: |mu|^2


def test_write_photos_helper_is_colour(tmp_path: Path) -> None:
    (path,) = write_photos(tmp_path, 1)
    assert np.asarray(Image.open(path)).std(axis=2).mean() > 5


def test_a_damaged_image_is_reported_not_replaced(photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for path in sorted(photos.glob("*.png")):
        (data / path.name).write_bytes(path.read_bytes())
    whole = (data / "p0.png").read_bytes()
    (data / "p0.png").write_bytes(whole[: len(whole) // 2])
    paths = sorted(data.glob("*.png"))
    result = evaluate_candidates([grey_baseline()], paths, 64, CPU, Extras())
    assert result["dataset"]["images"] == 3
    assert list(result["dataset"]["failed"]) == [str(data / "p0.png")]
    per_image = result["colourisers"][0]["per_image"]
    assert [Path(r["path"]).name for r in per_image] == ["p1.png", "p2.png", "p3.png"]


class _PictureClassifier(torch.nn.Module):
    """A stand-in for the ImageNet classifier whose answer depends on the picture (a random-
    weight EfficientNet gives every picture the same probabilities): a seeded linear map of
    each picture's 4x4 mean colours to 1000 logits."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.randn(1000, 48, generator=generator) * 30

    def probabilities(self, rgb: torch.Tensor) -> torch.Tensor:
        means = torch.nn.functional.adaptive_avg_pool2d(rgb.float(), 4).flatten(1)
        return (means @ self.weight.T).softmax(1)

    def top1(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.probabilities(rgb).argmax(1)


def test_global_cast_and_semantic_agreement(photos: Path) -> None:
    """cast = the set's mean output ab minus its mean true ab; semantic agreement = the share of
    pictures whose classifier top-1 matches the original's, semantic confidence the classifier's
    probability of that class (docs/METRICS.md)."""
    paths = sorted(photos.glob("*.png"))
    classifier = _PictureClassifier()
    extras = Extras(classifier=classifier)  # type: ignore[arg-type]
    constant = mean_baseline(torch.tensor([5.0, -3.0]))
    result = evaluate_candidates(
        [_oracle(paths, 64), grey_baseline(), constant], paths, 64, CPU, extras
    )
    oracle, grey, tinted = (c["mean"] for c in result["colourisers"])
    true_a, true_b = grey["mean_a_gt"], grey["mean_b_gt"]
    assert abs(true_a) + abs(true_b) > 1  # the photos have a colour of their own
    assert oracle["cast"] == pytest.approx(0.0, abs=1e-3)
    assert (grey["cast_a"], grey["cast_b"]) == pytest.approx((-true_a, -true_b), abs=1e-3)
    assert (tinted["cast_a"], tinted["cast_b"]) == pytest.approx(
        (5 - true_a, -3 - true_b), abs=1e-3
    )
    assert tinted["cast"] == pytest.approx(np.hypot(5 - true_a, -3 - true_b), abs=1e-3)

    # each picture classified as the evaluation sees it: the original, and grey
    rgb = torch.cat([batch for batch, _, _ in eval_loader(paths, 64, 8)]).float() / 255
    l, _ = rgb_to_model(rgb)
    truth_class = classifier.top1(rgb)
    on_grey = classifier.probabilities(model_to_rgb(l, torch.zeros_like(l).expand(-1, 2, -1, -1)))
    expected = on_grey.gather(1, truth_class[:, None])[:, 0]
    kept = (on_grey.argmax(1) == truth_class).float()
    assert 0 < kept.mean() < 1  # the stand-in keeps some pictures' class on grey, not all
    assert oracle["semantic_agreement"] == 1.0
    assert grey["semantic_agreement"] == pytest.approx(kept.mean().item())
    found = [row["semantic_confidence"] for row in result["colourisers"][1]["per_image"]]
    assert found == pytest.approx(expected.tolist(), rel=1e-4)
    assert grey["semantic_confidence"] == pytest.approx(expected.mean().item(), rel=1e-4)
    assert found != pytest.approx(on_grey.max(1).values.tolist(), rel=1e-3)  # not its own top
    assert oracle["semantic_confidence"] > grey["semantic_confidence"]


def test_eval_plots_leave_out_a_torn_last_line_of_the_runs_log(
    photos: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(
        small_config("bn", "train.image_size=64"),
        RunArgs(str(photos), run, max_steps=1, device="cpu"),
    )
    with (run / "metrics.jsonl").open("a") as log:
        log.write('{"kind": "train", "step": 2, "ep')
    plots = tmp_path / "plots"
    args = ["eval", "--model", str(run), "--data", str(photos), "--size", "64", "--no-effnet",
            "--no-semantic", "--plots", str(plots)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "cut short" in result.output
    assert (plots / "learning_curves.png").is_file()


def test_eval_shows_progress_with_rate_and_eta_in_a_log(photos: Path) -> None:
    """Not a terminal (CliRunner): plain lines on stderr, with pictures/s and an ETA."""
    args = ["eval", "--baseline", "grey", "--baseline", "mean", "--data", str(photos), "--size",
            "32", "--no-effnet", "--no-semantic", "--batch-size", "1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("eval of")]
    # the mean baseline's own pass over the pictures first: one count over both passes
    counts = [int(m[1]) for line in lines if (m := re.search(r": (\d+)/8 pictures", line))]
    assert len(counts) == len(lines) and counts == sorted(counts), lines
    assert counts[0] <= 2 and counts[-1] >= 7, lines
    assert all(re.search(r"[\d.]+ pictures/s, .* in, ETA \d+:\d\d:\d\d$", line) for line in lines)
