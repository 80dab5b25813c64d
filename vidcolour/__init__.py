"""vidcolour: colourise black-and-white film and video with a conditional GAN."""

__version__ = "0.1.0"

from vidcolour.colouriser import Colouriser

__all__ = ["Colouriser", "__version__"]
