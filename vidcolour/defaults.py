"""Defaults and limits that the command line shows in its options, kept in a module that
imports nothing: so `vidcolour --help` and a usage error answer at once, without first loading
torch and OpenCV (seconds on a cold start; tests/test_cli.py holds ``vidcolour.cli``'s imports
to that). The modules that use these values import them from here."""

# the colouriser's gain on predicted chroma, beyond which every colour is clipped to the
# gamut's edge
MAX_SATURATION = 4.0
# the stabiliser's weight of the colour carried along the motion (video/stabilise.py)
STABILISE_STRENGTH = 0.95
# frames colour is carried back from a keyframe (6 s at 25 fps; video/keyframes.py)
KEYFRAME_REACH = 150
# target length of a resumable segment, seconds: a crash costs at most about this much
# (video/segments.py)
SEGMENT_SECONDS = 180.0
