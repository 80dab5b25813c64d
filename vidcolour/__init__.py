"""vidcolour: colourise black-and-white film and video with a conditional GAN."""

from vidcolour._version import __version__
from vidcolour.colouriser import Colouriser

__all__ = ["Colouriser", "__version__"]
