import json
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from tests.helpers import tiny
from vidcolour import weights
from vidcolour.errors import VidcolourError
from vidcolour.nets import build_generator, fold_for_inference
from vidcolour.weights import WeightsError, load_generator, read_info, save_generator


def _trained_generator(name: str = "ibn_sn_md", **generator: object):
    gen = build_generator(tiny(name, **generator).model.generator)
    with torch.no_grad():
        for _ in range(2):  # non-trivial BN statistics and SN vectors
            gen.train()(torch.rand(2, 1, 256, 256) * 2 - 1)
    return gen.eval()


L = torch.rand(1, 1, 256, 256) * 2 - 1


@pytest.mark.parametrize("fold", [False, True])
def test_round_trip(tmp_path, fold: bool) -> None:
    gen = _trained_generator("bn_sn_md")
    if fold:
        fold_for_inference(gen)
    path = tmp_path / "g.safetensors"
    save_generator(path, gen, name="tiny", metadata={"data": "unit test"})
    loaded, info = load_generator(path)
    assert info.name == "tiny" and info.config == gen.config
    assert info.folded == (("sn", "bn") if fold else ())
    assert info.metadata["data"] == "unit test"
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(L), gen(L))
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]  # no temp file left


def test_half_precision_file_loads_as_float32(tmp_path) -> None:
    gen = fold_for_inference(_trained_generator())
    path = tmp_path / "g16.safetensors"
    save_generator(path, gen, name="half", half=True)
    with safe_open(str(path), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (not iterable) >= {torch.float16}
    loaded, _ = load_generator(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        assert (loaded(L) - gen(L)).abs().max() < 0.02


def test_missing_file(tmp_path) -> None:
    with pytest.raises(WeightsError, match="model file not found"):
        load_generator(tmp_path / "nope.safetensors")


def test_not_a_safetensors_file(tmp_path) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_generator(path)


def test_truncated_file(tmp_path) -> None:
    path = tmp_path / "g.safetensors"
    save_generator(path, _trained_generator(), name="tiny")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=str(path)) as err:
        load_generator(path)
    assert "\n" not in str(err.value)


def test_foreign_safetensors_file(tmp_path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(WeightsError, match="not a vidcolour generator"):
        load_generator(path)


def test_tensors_that_do_not_fit_the_config(tmp_path) -> None:
    gen = _trained_generator()
    path = tmp_path / "g.safetensors"
    save_generator(path, gen, name="tiny")
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
        meta = f.metadata()
    config = json.loads(meta["config"])

    config["ngf"] = 16  # same keys, every shape twice as wide
    save_file(tensors, str(path), metadata={**meta, "config": json.dumps(config)})
    with pytest.raises(WeightsError, match="has shape"):
        load_generator(path)

    config["ngf"], config["depth"] = 8, 6  # one block fewer: a different set of keys
    save_file(tensors, str(path), metadata={**meta, "config": json.dumps(config)})
    with pytest.raises(WeightsError, match="does not match its config"):
        load_generator(path)

    config["norm"] = "groupnorm"
    save_file(tensors, str(path), metadata={**meta, "config": json.dumps(config)})
    with pytest.raises(WeightsError, match="no usable generator config"):
        read_info(path)

    save_file(tensors, str(path), metadata={**meta, "format_version": "99"})
    with pytest.raises(WeightsError, match="format version '99'"):
        read_info(path)


def test_weights_that_are_not_numbers(tmp_path) -> None:
    """A run that diverged saves NaN: refused at load, not turned into flat colour."""
    path = tmp_path / "g.safetensors"
    save_generator(path, _trained_generator(), name="tiny")
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
        meta = f.metadata()
    key = sorted(tensors)[-1]
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(WeightsError, match=f"'{key}' holds NaN or infinite values"):
        load_generator(path)


def test_failed_save_leaves_nothing(tmp_path, monkeypatch) -> None:
    path = tmp_path / "g.safetensors"

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weights, "save_file", disk_full)
    with pytest.raises(OSError):
        save_generator(path, _trained_generator(), name="tiny")
    assert list(tmp_path.iterdir()) == []


def test_a_weights_writer_failing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(weights, "save_file", full)
    out = tmp_path / "g.safetensors"
    with pytest.raises(VidcolourError, match=r"cannot write .*No space left"):
        weights.save_generator(out, _trained_generator(), name="tiny")
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_permissions(tmp_path) -> None:
    import os
    import stat

    path = tmp_path / "g.safetensors"
    save_generator(path, _trained_generator(), name="tiny")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
