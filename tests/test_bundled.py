"""The bundled default model: present, loadable, and inside the wheel a user installs."""

import importlib.metadata
import json
import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vidcolour import Colouriser
from vidcolour.resources import DEFAULT_MODEL, model_names, models_dir
from vidcolour.weights import load_generator

from .video_helpers import frames

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "bikes_grey.mp4"


def test_default_model_ships() -> None:
    path = models_dir() / f"{DEFAULT_MODEL}.safetensors"
    assert DEFAULT_MODEL in model_names()
    assert path.stat().st_size <= 25 * 2**20
    _, info = load_generator(path)
    assert (info.config.norm, info.config.ngf) == ("ibn", 32)
    assert (models_dir() / "MODEL_CARD.md").is_file()
    colouriser = Colouriser.load()
    assert colouriser.name == info.name


def test_pretrained_encoder_model_ships_and_colourises() -> None:
    """`--model lite0`: the issue-19 search's run B, bundled beside the default."""
    path = models_dir() / "lite0.safetensors"
    assert path.stat().st_size <= 25 * 2**20
    _, info = load_generator(path)
    assert (info.config.arch, info.config.norm, info.folded) == ("lite0_unet", "ibn", ("sn", "bn"))
    grey = (np.arange(48 * 80) % 251).astype(np.uint8).reshape(48, 80)
    rgb = Colouriser.load("lite0").colourise_image(grey)
    assert rgb.shape == (48, 80, 3) and rgb.std(axis=2).mean() > 0.5  # colour, not grey


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    return next(out.glob("vidcolour-*.whl"))


def test_wheel_holds_model_and_configs(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "vidcolour/models/default.safetensors",
        "vidcolour/models/MODEL_CARD.md",
        "vidcolour/configs/default.yaml",
        "vidcolour/cli.py",
    ):
        assert name in names


def _venv_with_this_environment(env_dir: Path) -> Path:
    """A new virtualenv that imports this interpreter's installed packages, in a venv or not;
    returns its python.

    ``system_site_packages`` would show the base interpreter's packages, which inside a venv
    (where most users run pip) lack torch and the rest. Instead a .pth file lists the
    directories this environment's distributions are installed in: plain directories, whose
    own .pth files do not run, so an editable install's pointer to a source tree stays out,
    and the venv's own site-packages comes first on sys.path. Its pip is this environment's
    too: ensurepip's own pip and setuptools would shadow newer ones that torch requires. It
    also works one venv deeper, as in test_readme_test_command_inside_a_fresh_venv.
    """
    venv.create(env_dir)
    python = env_dir / "bin" / "python"
    homes = [Path(d.locate_file("")) for d in importlib.metadata.distributions()]
    homes += [Path(p) for p in site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        homes.append(Path(site.getusersitepackages()))
    dirs = [h for h in dict.fromkeys(h.resolve() for h in homes) if h.is_dir()]
    # never the source tree itself (on sys.path under `python -m pytest`); a virtualenv kept
    # inside the checkout (`python -m venv .venv`, as many do) is this environment all the same
    dirs = [d for d in dirs if d != ROOT]
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "_outer_environment.pth").write_text("".join(f"{d}\n" for d in dirs))
    return python


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_installed_wheel_colourises_the_example(wheel: Path, tmp_path: Path) -> None:
    """As a new user: install the wheel (nothing downloaded: --no-index, dependencies from this
    environment) and run the README's first command away from the source tree."""
    env_dir = tmp_path / "venv"
    python = _venv_with_this_environment(env_dir)
    install = ["install", "-q", "--no-index", "--no-deps", "--force-reinstall", wheel]
    subprocess.run([python, "-m", "pip", *install], check=True)
    work = tmp_path / "user"
    work.mkdir()
    clean = _clean_env()
    where = subprocess.run(
        [python, "-c", "import vidcolour; print(vidcolour.__file__)"],
        cwd=work,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(env_dir)  # not this checkout
    subprocess.run(
        [env_dir / "bin" / "vidcolour", "run", EXAMPLE, "-o", "colour.mp4"],
        cwd=work,
        env=clean,
        check=True,
        capture_output=True,
    )
    assert len(frames(work / "colour.mp4")) == len(frames(EXAMPLE))


@pytest.mark.slow
def test_readme_test_command_inside_a_fresh_venv(tmp_path: Path) -> None:
    """The README's second command as most users run it, inside a new virtualenv: the editable
    install with the test extra, then the wheel test above run with that venv's python (the
    case issue 18 found failing). Offline: pip is given no index, and finds every requirement
    already installed because the venv sees this environment's packages."""
    pytest.importorskip("editables", reason="hatchling's editable build needs the test extra")
    env_dir = tmp_path / "venv"
    python = _venv_with_this_environment(env_dir)
    clean = _clean_env()
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-build-isolation",
            "-e",
            ".[test]",
        ],
        cwd=ROOT,
        env=clean,
        check=True,
    )
    where = subprocess.run(
        [python, "-c", "import vidcolour; print(vidcolour.__file__)"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(ROOT)  # the editable install, from the venv
    test = f"{Path(__file__).name}::test_installed_wheel_colourises_the_example"
    run = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=ROOT / "tests",
        env=clean,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:]


def test_default_model_figures_match_its_card(tmp_path: Path) -> None:
    """models/MODEL_CARD.md's figures, re-measured through `vidcolour eval`: the targets it
    meets, and its ab-L1 (the target it misses, 9.13 against grey's 8.60) as printed."""
    val = ROOT.parent / "shared" / "data" / "open-photos" / "val"
    if not val.is_dir():
        pytest.skip("needs ../shared/data")
    out = tmp_path / "eval.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "vidcolour",
            "eval",
            "--model",
            DEFAULT_MODEL,
            "--model",
            "lite0",
            "--baseline",
            "grey",
            "--data",
            val,
            "--json",
            out,
            "--no-effnet",
            "--no-semantic",
        ],
        check=True,
        capture_output=True,
    )
    model, lite0, grey = (c["mean"] for c in json.loads(out.read_text())["colourisers"])
    assert model["colourfulness_ratio"] >= 0.8
    assert model["hist_overlap"] > grey["hist_overlap"]
    assert model["dataset_hist_overlap"] > grey["dataset_hist_overlap"]
    # as printed in the card, with room for another CPU's bf16 rounding
    assert model["ab_l1"] == pytest.approx(9.13, abs=0.03)
    assert grey["ab_l1"] == pytest.approx(8.60, abs=0.005)
    card = (models_dir() / "MODEL_CARD.md").read_text()
    assert "| **default** (shipped) | 9.13 |" in card and "| grey (ab = 0) | 8.60 |" in card
    # the opt-in pretrained-encoder model's row in the card's search table (val)
    assert lite0["ab_l1"] == pytest.approx(8.47, abs=0.03)
    assert lite0["colourfulness_ratio"] == pytest.approx(0.84, abs=0.01)
    assert "| B: **lite0** (bundled, `--model lite0`) | 8.47 | 0.84 |" in card
