"""The Python packages the GPU machine lacks, packed to travel with the working tree.

    python benchmarks/gpu_deps.py [--python-version 3.12] [--out .gpu/deps.tar.xz]

The lent GPU machine (docs/BENCHMARKS.md, "The GPU check") has PyTorch and most of vidcolour's
dependencies, but not PyAV, kornia or kornia's Rust core, and reaches no package registry. This
downloads their wheels here, for the machine's Python (3.12) and at the versions installed
here, unpacks them and packs the files into one xz tarball: 43 MB of wheels become about 28 MiB,
which with the working tree's 33 MiB stays under the 64 MiB a call may carry. Takes a few
minutes (xz at its strongest). ``gpu_check.sh`` unpacks it where ``import av, kornia`` fails.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import lzma
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

MISSING = ("av", "kornia", "kornia_rs")  # on the GPU machine's image (the device's KINDS.md)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def download(folder: Path, python_version: str) -> list[Path]:
    """The wheels of ``MISSING`` at this machine's versions, for ``python_version``."""
    wanted = [f"{name}=={importlib.metadata.version(name)}" for name in MISSING]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--python-version", python_version, "--implementation", "cp", *platforms,
         "-d", str(folder), *wanted],
        check=True,
    )  # fmt: skip
    return sorted(folder.glob("*.whl"))


def pack(wheels: list[Path], out: Path) -> None:
    """Every file of ``wheels``, as pip would lay them out in a site folder, into ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with (
        lzma.open(tmp, "wb", preset=9 | lzma.PRESET_EXTREME) as xz,
        tarfile.open(fileobj=xz, mode="w") as tar,
    ):
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                for entry in archive.infolist():
                    if entry.is_dir():
                        continue
                    info = tarfile.TarInfo(entry.filename)
                    info.size = entry.file_size
                    info.mode = (
                        0o755
                        if entry.filename.endswith(".so") or ".so." in entry.filename
                        else 0o644
                    )
                    with archive.open(entry) as data:
                        tar.addfile(info, data)
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python")
    parser.add_argument("--out", type=Path, default=Path(".gpu/deps.tar.xz"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheels = download(Path(tmp), args.python_version)
        print("packing", ", ".join(w.name for w in wheels), flush=True)
        pack(wheels, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
