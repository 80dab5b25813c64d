"""Stills for ``vidcolour run``: a picture read with everything it carries, and its colour
version written with as much of that as the output format can hold.

Colour comes from the luma alone. Transparency, bit depth (16-bit PNG and TIFF, grey or RGB),
EXIF, XMP, the ICC profile, the resolution and PNG text travel with the picture; whatever the
output format cannot hold is named in one notice (docs/VIDEO.md, "Stills").
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageCms, TiffImagePlugin, UnidentifiedImageError

from vidcolour.errors import VidcolourError
from vidcolour.tint import is_single_tint

# The still formats vidcolour reads and writes, by file extension: Pillow's name for each.
IMAGE_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}


@dataclass(frozen=True)
class Holds:
    """What an output format can hold."""

    alpha: bool = False
    deep: bool = False  # 16 bits per sample
    exif: bool = False
    xmp: bool = False
    icc: bool = False
    dpi: bool = False
    text: bool = False  # any text entries; JPEG holds a comment alone
    tag: bool = False  # the provenance tag


_ALL = {"exif": True, "xmp": True, "icc": True, "tag": True}
HOLDS = {
    "PNG": Holds(alpha=True, deep=True, dpi=True, text=True, **_ALL),
    "TIFF": Holds(alpha=True, deep=True, dpi=True, **_ALL),
    "JPEG": Holds(dpi=True, **_ALL),
    "WEBP": Holds(alpha=True, **_ALL),
    "BMP": Holds(dpi=True),
}

EXIF_IFD, GPS_IFD, INTEROP_IFD = 0x8769, 0x8825, 0xA005
ORIENTATION, SOFTWARE = 0x0112, 0x0131
# IFD0 tags that describe how the input's pixels were stored or coloured, or that travel by
# their own route (resolution, XMP, ICC): the output is written afresh, so none of them may be
# copied into its EXIF.
LAYOUT_TAGS = frozenset(
    {
        *range(254, 260), *range(262, 267), 273, 274, *range(277, 285), *range(290, 294),
        296, 301, *range(317, 326), 330, 332, *range(338, 342), 347, *range(512, 522),
        *range(529, 533), 700, 33723, 34377, 34675, 37724,
    }
)  # fmt: skip
JPEG_MARKER_BYTES = 65533  # the most one JPEG marker segment holds
JPEG_XMP_BYTES = JPEG_MARKER_BYTES - 2 - len(b"http://ns.adobe.com/xap/1.0/\0")
PNG_XMP_KEY = "XML:com.adobe.xmp"


@dataclass
class Still:
    """A still, upright (its EXIF orientation applied), and what it carries."""

    luma: np.ndarray  # (H, W) float32 in [0, 1]: the grey, sRGB transfer
    bits: int  # 8 or 16: the precision of luma and alpha
    alpha: np.ndarray | None = None  # (H, W) float32 in [0, 1]
    coloured: bool = False
    toned: bool = False  # coloured by one tint alone (sepia, ...): vidcolour/tint.py
    exif: bytes | None = None  # b"Exif\0\0..." without orientation and layout tags
    xmp: bytes | None = None  # orientation reset to upright
    icc: bytes | None = None  # the input's sRGB profile, or sRGB in place of another
    dpi: tuple[float, float] | None = None
    text: dict[str, str] = field(default_factory=dict)  # PNG text; a JPEG comment as "Comment"
    lost: list[str] = field(default_factory=list)  # what no output format can keep


# ----------------------------------------------------------------------------------- reading
def read_still(path: Path) -> Still:
    """The still at ``path``; one-line VidcolourError when it cannot be read."""
    if not path.is_file():
        raise VidcolourError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            image.load()
            return _read(path, image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise VidcolourError(f"{path} is not an image Pillow can read ({exc})") from None
    except VidcolourError as exc:
        raise VidcolourError(f"{path}: {exc}") from None


def _read(path: Path, image: Image.Image) -> Still:
    lost: list[str] = []
    try:
        exif = image.getexif()
        for sub in (EXIF_IFD, GPS_IFD):  # read now, while the file is open
            if sub in exif:
                exif.get_ifd(sub)
        if EXIF_IFD in exif and INTEROP_IFD in exif.get_ifd(EXIF_IFD):
            exif.get_ifd(INTEROP_IFD)
    except Exception:  # Pillow raises many kinds on a damaged EXIF block
        exif = Image.Exif()
        lost.append("EXIF (unreadable)")
    orientation = exif.get(ORIENTATION, 1)
    orientation = orientation if orientation in range(1, 9) else 1
    stored_bits = _stored_bits(path, image)
    # Pillow reads 16-bit colour as 8 bits, OpenCV at full depth
    deep = image.mode in ("RGB", "RGBA", "LA") and stored_bits > 8
    still = _deep_colour(path) if deep else None
    if still is None:
        still = _pixels(image)
    if stored_bits > still.bits:
        kind = " float" if image.mode == "F" else ""
        lost.append(f"{stored_bits}-bit{kind} precision (read at {still.bits} bits)")
    still.luma = upright(still.luma, orientation)
    if still.alpha is not None:
        still.alpha = upright(still.alpha, orientation)
    height, width = still.luma.shape
    try:
        still.exif = _exif_bytes(exif, width, height)
    except Exception:  # a value Pillow read but cannot write again
        lost.append("EXIF (cannot be rewritten)")
    still.xmp = _xmp(image)
    still.icc = _icc(image.info.get("icc_profile"), lost)
    still.dpi = _dpi(image, exif)
    if still.dpi is not None and orientation > 4:  # turned a quarter: the axes swap
        still.dpi = still.dpi[::-1]
    still.text = _text(image)
    if _has_iptc(image):
        lost.append("IPTC/Photoshop records")
    try:
        pages = getattr(image, "n_frames", 1)
    except Exception:  # counting reads every page's header: a damaged later one raises anything
        lost.append("the pages after the first (damaged; the first alone is colourised)")
    else:
        if pages > 1:
            lost.append(f"pages 2-{pages} (the first alone is colourised)")
    still.lost = lost
    return still


def _is_jpeg(image: Image.Image) -> bool:
    return image.format in ("JPEG", "MPO")


def _has_iptc(image: Image.Image) -> bool:
    if _is_jpeg(image):
        return any(marker == "APP13" for marker, _ in getattr(image, "applist", []))
    return image.format == "TIFF" and bool({33723, 34377} & set(getattr(image, "tag_v2", {})))


def _stored_bits(path: Path, image: Image.Image) -> int:
    """Bits per sample in the file, which Pillow may have read at fewer."""
    if image.format == "PNG":
        with path.open("rb") as f:
            return f.read(25)[24]  # IHDR is always first: bit depth at byte 24
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, 8)  # type: ignore[attr-defined]
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


def _deep_colour(path: Path) -> Still | None:
    try:
        pixels = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        pixels = None
    if pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 3:
        return None  # a coding OpenCV lacks: read at 8 bits, with a notice
    values = pixels.astype(np.float32) / 65535
    b, g, r = values[..., 0], values[..., 1], values[..., 2]  # OpenCV orders BGR(A)
    spread = np.abs(values[..., :3] - values[..., :3].mean(axis=2, keepdims=True)).mean()
    luma = 0.299 * r + 0.587 * g + 0.114 * b  # BT.601, as Pillow's convert("L")
    return Still(
        luma=luma,
        bits=16,
        alpha=values[..., 3] if pixels.shape[2] == 4 else None,
        coloured=bool(spread * 255 > 2.0),
        toned=is_single_tint(b - luma, r - luma),
    )


def _pixels(image: Image.Image) -> Still:
    coloured = toned = False
    if image.mode not in ("L", "1", "I", "I;16", "I;16B", "I;16L", "F", "LA"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
        coloured = bool(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean() > 2.0)
        if coloured:
            y = rgb @ np.array([0.299, 0.587, 0.114])
            toned = is_single_tint(rgb[..., 2] - y, rgb[..., 0] - y)
    alpha: np.ndarray | None = None
    if image.mode == "F":
        return _float_pixels(image)
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        key = image.info.get("transparency")
        if isinstance(key, int):  # a PNG colour key: that one grey is transparent
            alpha = (values != key).astype(np.float32)
        luma: np.ndarray = np.clip(values / top, 0, 1).astype(np.float32)
        return Still(luma, 16 if top > 255 else 8, alpha, coloured, toned)
    if image.has_transparency_data:
        alpha = np.asarray(image.convert("RGBA"))[..., 3].astype(np.float32) / 255
    luma = np.asarray(image.convert("L")).astype(np.float32) / 255
    return Still(luma, 8, alpha, coloured, toned)


FLOAT_SLACK = 1e-3  # float samples this far outside 0..1 are clipped, not refused


def _float_pixels(image: Image.Image) -> Still:
    """A float still (mode F: a 32-bit float TIFF), read as 0 black to 1 white, the usual
    convention for float pictures, at 16 bits; a processing step's slight overshoot (within
    FLOAT_SLACK) is clipped. Other values have no agreed meaning: refused."""
    values = np.asarray(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not np.isfinite(values).all() or low < -FLOAT_SLACK or high > 1 + FLOAT_SLACK:
        raise VidcolourError(
            f"float samples from {low:g} to {high:g}: float stills are read as 0 (black) "
            "to 1 (white); save it as 8- or 16-bit integers, or scaled to 0..1"
        )
    return Still(values.clip(0, 1).astype(np.float32), 16)


def upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` (H, W, ...) as displayed under EXIF ``orientation`` (1-8)."""
    if orientation in (5, 6, 7, 8):
        pixels = np.swapaxes(pixels, 0, 1)  # 5 is the transpose; 6, 7 and 8 are it flipped
    flips = {2: (1,), 3: (0, 1), 4: (0,), 6: (1,), 7: (0, 1), 8: (0,)}.get(orientation, ())
    if flips:
        pixels = np.flip(pixels, flips)
    return np.ascontiguousarray(pixels)


def _exif_bytes(exif: Image.Exif, width: int, height: int) -> bytes | None:
    for tag in [t for t in exif if t in LAYOUT_TAGS]:
        del exif[tag]
    if not exif:
        return None
    sub = exif.get_ifd(EXIF_IFD) if EXIF_IFD in exif else {}
    for tag, value in ((0xA002, width), (0xA003, height), (0xA001, 1)):
        if tag in sub:  # its size is the upright picture's; its colour space sRGB (see _icc)
            sub[tag] = value
    return exif.tobytes()


_XMP_ORIENTATION = re.compile(rb"(tiff:Orientation\s*=\s*[\"']|<tiff:Orientation>\s*)[1-8]")


def _xmp(image: Image.Image) -> bytes | None:
    xmp = image.info.get("xmp") or image.info.get(PNG_XMP_KEY)
    if not xmp:
        return None
    xmp = xmp.encode() if isinstance(xmp, str) else bytes(xmp)
    return _XMP_ORIENTATION.sub(rb"\g<1>1", xmp)  # the picture is upright now


def _icc(icc: bytes | None, lost: list[str]) -> bytes | None:
    """The input's profile when it is sRGB; otherwise sRGB in its place, with a notice: the
    colour is made in sRGB, and another profile would have viewers misread it."""
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(profile).strip()
        if profile.profile.xcolor_space.strip() == "RGB" and "srgb" in name.lower():
            return icc
    except (ImageCms.PyCMSError, OSError, ValueError):
        name = "unreadable"
    lost.append(f"ICC profile '{name}' (the output is sRGB and says so)")
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _dpi(image: Image.Image, exif: Image.Exif) -> tuple[float, float] | None:
    """The resolution the file states; Pillow's own ``info["dpi"]`` is 72 or 1 when a JPEG or
    a TIFF states none."""
    unit: Any = None
    if _is_jpeg(image):
        if image.info.get("jfif_unit") in (1, 2):
            return image.info["dpi"]
        tags: Any = exif
        unit = exif.get(296)
    elif image.format == "TIFF":
        tags = image.tag_v2  # type: ignore[attr-defined]
        unit = tags.get(296, 2)  # TIFF's default unit is the inch
    else:
        dpi = image.info.get("dpi")
        return (float(dpi[0]), float(dpi[1])) if dpi else None
    if unit not in (2, 3) or 282 not in tags or 283 not in tags:
        return None
    scale = 2.54 if unit == 3 else 1.0
    return float(tags[282]) * scale, float(tags[283]) * scale


def _text(image: Image.Image) -> dict[str, str]:
    if image.format == "PNG":
        text = dict(image.text)  # type: ignore[attr-defined]
        text.pop(PNG_XMP_KEY, None)
        text.pop("Software", None)  # replaced by vidcolour's provenance tag
        return {k: str(v) for k, v in text.items()}
    comment = image.info.get("comment")
    if _is_jpeg(image) and comment:
        try:
            return {"Comment": comment.decode()}
        except UnicodeDecodeError:
            return {"Comment": comment.decode("latin-1")}
    return {}


# ----------------------------------------------------------------------------------- writing
def _losses(still: Still, fmt: str) -> list[str]:
    """What of ``still`` an output in ``fmt`` (a key of HOLDS) does not keep, in words."""
    holds, name = HOLDS[fmt], fmt if fmt != "WEBP" else "WebP"
    lost = []
    if still.alpha is not None and not holds.alpha:
        lost.append(f"transparency ({name} has none)")
    if still.bits > 8 and not holds.deep:
        lost.append(f"16-bit precision ({name} holds 8 bits)")
    for kind, present, held in (
        ("EXIF", still.exif, holds.exif),
        ("XMP", still.xmp, holds.xmp),
        ("ICC profile", still.icc, holds.icc),
        ("resolution (dpi)", still.dpi, holds.dpi),
    ):
        if present and not held:
            lost.append(kind)
    text = [k for k in still.text if not holds.text and not (fmt == "JPEG" and k == "Comment")]
    if text:
        lost.append(f"text ({', '.join(text)})")
    if not holds.tag:
        lost.append(f"the provenance tag ({name} holds no metadata)")
    return still.lost + lost


def write_still(path: Path, fmt: str, rgb: np.ndarray, still: Still, tag: str) -> list[str]:
    """Write the colour picture ``rgb`` ((H, W, 3) float32 sRGB in [0, 1]) as ``fmt`` (a key of
    HOLDS) at ``path``, with ``still``'s alpha, precision and metadata as far as ``fmt`` holds
    them, and ``tag`` (the provenance tag) where it can go. Returns what was not kept, in
    words."""
    holds = HOLDS[fmt]
    bits = 16 if still.bits > 8 and holds.deep else 8
    top = 2**bits - 1
    planes = [rgb] if still.alpha is None or not holds.alpha else [rgb, still.alpha[..., None]]
    pixels = np.round(np.concatenate(planes, axis=2) * top).clip(0, top)
    pixels = pixels.astype(np.uint16 if bits == 16 else np.uint8)
    exif = _exif_with(still.exif, tag) if holds.exif else None
    lost = _losses(still, fmt)
    if fmt == "PNG":
        path.write_bytes(_png(pixels, still, exif, tag))
    elif fmt == "TIFF":
        _tiff(path, pixels, still, exif, tag)
    else:
        lost += _pillow(path, fmt, pixels, still, exif)
    return lost


def _exif_with(exif_bytes: bytes | None, tag: str) -> Image.Exif:
    exif = Image.Exif()
    if exif_bytes:
        exif.load(exif_bytes)
    exif[SOFTWARE] = tag
    return exif


def _pillow(
    path: Path, fmt: str, pixels: np.ndarray, still: Still, exif: Image.Exif | None
) -> list[str]:
    """JPEG, WebP and BMP, by Pillow. Returns what did not fit (a JPEG segment's limit)."""
    holds, lost = HOLDS[fmt], []
    options: dict[str, Any] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    limit = JPEG_MARKER_BYTES if fmt == "JPEG" else None
    if exif is not None:
        options["exif"] = exif.tobytes()
        if limit and len(options["exif"]) > limit:
            lost.append(f"EXIF ({len(options['exif'])} bytes; a JPEG segment holds {limit})")
            options["exif"] = _exif_with(None, exif[SOFTWARE]).tobytes()
    if holds.xmp and still.xmp:
        if fmt == "JPEG" and len(still.xmp) > JPEG_XMP_BYTES:
            lost.append(f"XMP ({len(still.xmp)} bytes; a JPEG segment holds {JPEG_XMP_BYTES})")
        else:
            options["xmp"] = still.xmp
    if holds.icc and still.icc:
        options["icc_profile"] = still.icc
    if holds.dpi and still.dpi:
        options["dpi"] = still.dpi
    if fmt == "JPEG" and "Comment" in still.text:
        comment = still.text["Comment"].encode()
        if len(comment) > JPEG_MARKER_BYTES:
            lost.append(f"comment ({len(comment)} bytes; a JPEG segment holds {limit})")
        else:
            options["comment"] = comment
    Image.fromarray(pixels).save(path, format=fmt, **options)
    return lost


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_text(key: str, value: str) -> bytes:
    keyword = key.encode("latin-1", "replace")[:79]
    try:
        return _png_chunk(b"tEXt", keyword + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:  # iTXt: uncompressed, no language, UTF-8
        return _png_chunk(b"iTXt", keyword + b"\0\0\0\0\0" + value.encode())


def _png(pixels: np.ndarray, still: Still, exif: Image.Exif | None, tag: str) -> bytes:
    """A PNG of (H, W, 3 or 4) uint8/uint16 ``pixels``: written here, as Pillow writes no
    16-bit colour."""
    height, width, channels = pixels.shape
    deep = pixels.dtype == np.uint16
    chunks = [
        _png_chunk(
            b"IHDR",
            struct.pack(
                ">IIBBBBB", width, height, 16 if deep else 8, 6 if channels == 4 else 2, 0, 0, 0
            ),
        )
    ]
    if still.icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(still.icc)))
    if still.dpi:
        ppm = [round(d / 0.0254) for d in still.dpi]
        chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if still.exif and exif is not None:
        chunks.append(_png_chunk(b"eXIf", exif.tobytes()[6:]))  # without b"Exif\0\0"
    if still.xmp:  # iTXt, uncompressed, as the XMP specification asks
        chunks.append(_png_chunk(b"iTXt", PNG_XMP_KEY.encode() + b"\0\0\0\0\0" + still.xmp))
    chunks += [_png_text(k, v) for k, v in {**still.text, "Software": tag}.items()]
    # Every row "Sub"-filtered (each byte less the same byte one pixel before): smooth pictures
    # compress far better than unfiltered.
    rows = pixels.astype(">u2" if deep else np.uint8).reshape(height, -1).view(np.uint8)
    step = channels * (2 if deep else 1)
    filtered = rows.copy()
    filtered[:, step:] -= rows[:, :-step]
    data = zlib.compress(np.hstack([np.ones((height, 1), np.uint8), filtered]).tobytes(), 6)
    chunks += [_png_chunk(b"IDAT", data[i : i + (1 << 20)]) for i in range(0, len(data), 1 << 20)]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + _png_chunk(b"IEND", b"")


def _tiff(path: Path, pixels: np.ndarray, still: Still, exif: Image.Exif | None, tag: str) -> None:
    """An uncompressed baseline TIFF, one strip, its tags laid out by Pillow's IFD writer
    (Pillow writes no 16-bit colour)."""
    height, width, channels = pixels.shape
    bits = 16 if pixels.dtype == np.uint16 else 8
    data = pixels.astype("<u2" if bits == 16 else np.uint8).tobytes()
    if len(data) >= 2**32:
        raise VidcolourError(f"{path.name}: {len(data)} bytes is too large for a TIFF")
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    if exif is not None:
        for key, value in exif.items():
            if key in (EXIF_IFD, GPS_IFD):
                value = dict(exif.get_ifd(key))
                if key == EXIF_IFD and INTEROP_IFD in value:
                    value[INTEROP_IFD] = exif.get_ifd(INTEROP_IFD)
            ifd[key] = value
    ifd[SOFTWARE] = tag
    ifd[256], ifd[257], ifd[258] = width, height, (bits,) * channels
    ifd[259], ifd[262], ifd[277], ifd[278], ifd[284] = 1, 2, channels, height, 1
    ifd[273], ifd[279] = 0, len(data)  # the strip follows the IFD: Pillow adds its offset
    if channels == 4:
        ifd[338] = 2  # unassociated alpha: colour is not premultiplied
    # Baseline TIFF requires a resolution: without one, "no unit, square pixels"
    ifd[296], ifd[282], ifd[283] = (2, *still.dpi) if still.dpi else (1, 1, 1)
    if still.xmp:
        ifd[700] = still.xmp
    if still.icc:
        ifd[34675] = still.icc
    with path.open("wb") as f:
        ifd.save(f)
        f.write(data)
