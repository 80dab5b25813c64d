"""vidcolour: colourise black-and-white film and video with a conditional GAN."""

__version__ = "0.1.0"
