"""Toned prints and films: one tint (sepia, selenium, cyanotype blue) laid over a
black-and-white picture. Their chroma is not colour to keep: the model replaces it, and the
user should be told that in those words, not that the input "already has colour"."""

from __future__ import annotations

import numpy as np

TINT_ALIGNMENT = 0.9  # toned above: chroma points one way almost everywhere

TONED_NOTICE = (
    "{src} is toned (sepia or another single tint over a black-and-white picture): "
    "the tint is replaced by new colour, predicted from the picture's lightness"
)
COLOUR_NOTICE = "{src} already has colour; colourising from its luma alone"


def is_single_tint(u: np.ndarray, v: np.ndarray) -> bool:
    """Whether chroma offsets from grey (``u``, ``v``: any shape, same units, 0 = grey) share
    one hue: the length of their mean over their mean length. A tint gives ~1 (the same hue,
    stronger or weaker); a colour picture's hues cancel out. Near-grey pixels weigh little."""
    u = u.astype(np.float64).ravel()
    v = v.astype(np.float64).ravel()
    length = np.hypot(u, v).mean()
    if length == 0:
        return False
    return bool(np.hypot(u.mean(), v.mean()) / length > TINT_ALIGNMENT)


def colour_notice(src: object, toned: bool) -> str:
    """The notice for an input that is not grey."""
    return (TONED_NOTICE if toned else COLOUR_NOTICE).format(src=src)
