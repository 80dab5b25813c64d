import re
import subprocess
import sys

import yaml
from click.testing import CliRunner

from tests.helpers import ALL_CONFIGS
from vidcolour.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), terminal_width=120)


def test_models_lists_every_config_with_computed_costs() -> None:
    result = run("models")
    assert result.exit_code == 0, result.output
    for name in ALL_CONFIGS:
        assert f" {name} " in result.output
    # The paper-size generator: 41.8 M parameters, 11.9 GFLOP per 256x256 frame.
    assert "41.83M" in result.output and "11.91" in result.output


def test_models_follows_overrides() -> None:
    result = run("models", "--set", "model.generator.ngf=32")
    assert result.exit_code == 0, result.output
    assert "41.83M" not in result.output and "10.46M" in result.output


def test_config_prints_the_resolved_config() -> None:
    result = run(
        "config", "ibn_sn_md", "--set", "model.generator.ngf=32", "--set", "loss.gan=hinge"
    )
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.output)
    assert resolved["model"]["generator"]["ngf"] == 32
    assert resolved["loss"]["gan"] == "hinge"
    assert resolved["model"]["discriminator"]["scales"] == 3


def test_errors_are_one_line_without_traceback() -> None:
    for args, message, code in [
        (("config", "bn", "--set", "model.generator.nfg=3"), "unknown config key", 1),
        (("config", "no_such_config"), "unknown config 'no_such_config'", 1),
        (("config", "missing.yaml"), "config file not found", 1),
        (("models", "--size", "200"), "multiple of 128", 2),  # a usage error
        (("models", "--set", "model.discriminator.scales=9"), "too small for the disc", 2),
    ]:
        result = run(*args)
        assert result.exit_code == code
        assert message in result.output
        assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_times_must_be_finite() -> None:
    """nan and infinity pass a range's comparisons; the options refuse them as click refuses
    any bad value (its usage lines, then one error line)."""
    for option, value in (("--start", "nan"), ("--duration", "inf"), ("--strength", "nan")):
        result = run("run", "a.mp4", "-o", "b.mp4", option, value)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"Invalid value for '{option}': '{value}' is not a finite number" in result.output


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vidcolour", "--help"], capture_output=True, text=True, check=True
    )
    assert "Colourise black-and-white film" in out.stdout


def test_help_loads_neither_torch_nor_opencv() -> None:
    """`--help` and usage errors answer without first importing torch and OpenCV (seconds on a
    cold start): the command line imports them only in the commands that work on pictures."""
    probe = """
import sys
from click.testing import CliRunner
from vidcolour.cli import main
CliRunner().invoke(main, ["run", "--help"])
CliRunner().invoke(main, ["models", "--size", "200"])
print(" ".join(m for m in ("torch", "cv2", "av", "kornia", "numpy") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _help_examples() -> list[str]:
    """Every example line of every command's --help."""
    import click

    found = []

    def walk(command: click.Command, path: list[str]) -> None:
        text = run(*path, "--help").output
        lines = text.split("Example", 1)[1].splitlines()[1:] if "Example" in text else []
        for line in lines:
            if not line.startswith("    ") or not line.strip():
                break
            found.append(line.strip())
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(main, [])
    return found


def test_help_examples_run_as_written() -> None:
    """Each example in a --help is a shell line that parses (a note is a # comment) and names
    only options its command has."""
    examples = _help_examples()
    assert len(examples) > 20
    for line in examples:
        syntax = subprocess.run(["bash", "-n", "-c", line], capture_output=True, text=True)
        assert syntax.returncode == 0, f"{line!r}: {syntax.stderr}"
        words = line.split("#", 1)[0].split()
        if words[:1] != ["vidcolour"]:
            continue
        text = run(*words[1 : 3 if words[1] == "data" else 2], "--help").output
        options = set(re.findall(r"--[\w-]+", text))  # whole names: --res is no --resolution
        for word in words:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"{line!r}: no {word} in its --help"
