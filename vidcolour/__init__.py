"""vidcolour: colourise black-and-white film and video with a conditional GAN."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vidcolour._version import __version__

if TYPE_CHECKING:
    from vidcolour.colouriser import Colouriser

__all__ = ["Colouriser", "__version__"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that `import vidcolour` does not import torch: the command line
    # can then turn a Ctrl-C during that slow import into one line (vidcolour/entry.py).
    if name == "Colouriser":
        from vidcolour.colouriser import Colouriser

        return Colouriser
    raise AttributeError(f"module 'vidcolour' has no attribute {name!r}")
