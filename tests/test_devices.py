import pytest
import torch

from vidcolour import devices
from vidcolour.devices import autocast_dtype
from vidcolour.errors import VidcolourError

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("native", "precision", "expected"),
    [
        (True, "auto", torch.bfloat16),
        (False, "auto", None),  # emulated bf16 is tens of times slower than float32
        (False, "bf16", torch.bfloat16),  # asked for by name: kept
        (True, "fp32", None),
    ],
)
def test_auto_takes_bf16_only_where_it_is_native(monkeypatch, native, precision, expected) -> None:
    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: native)
    assert autocast_dtype(CPU, precision) == expected


def test_unknown_precision_is_named() -> None:
    with pytest.raises(VidcolourError, match="unknown precision 'fp16'"):
        autocast_dtype(CPU, "fp16")
