"""Stills keep what they carry (issue 18, defect 6): transparency, 16-bit precision, EXIF, XMP,
ICC profile, resolution and text wherever the output format holds them, plus vidcolour's
provenance tag; one notice names what a format cannot keep. Every picture is made here.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageCms, ImageOps

from tests.video_helpers import save_tiny_model
from vidcolour import Colouriser
from vidcolour.cli import main
from vidcolour.colour import grey_to_l, rgb_to_lab
from vidcolour.run import colourise_image_file
from vidcolour.stills import upright
from vidcolour.video.synth import grey_picture

H, W = 48, 64
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
    b'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
    b'xmlns:dc="http://purl.org/dc/elements/1.1/" tiff:Orientation="6" '
    b'photoshop:Credit="Courtesy of the Archive"><dc:rights><rdf:Alt>'
    b'<rdf:li xml:lang="x-default">Public domain</rdf:li></rdf:Alt></dc:rights>'
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)
XMP_UPRIGHT = XMP.replace(b'tiff:Orientation="6"', b'tiff:Orientation="1"')


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def colouriser(model: Path) -> Colouriser:
    return Colouriser.load(model, "cpu", resolution=64)


def colourise(colouriser: Colouriser, src: Path, dst: Path) -> list[str]:
    notices: list[str] = []
    colourise_image_file(colouriser, src, dst, False, notices.append)
    return notices


def grey16() -> np.ndarray:
    """(H, W) uint16: a smooth ramp whose codes are not 8-bit codes scaled up."""
    yy, xx = np.mgrid[0:H, 0:W]
    return (3000 + xx * 900 + yy * 70 + (xx * yy) % 97).astype(np.uint16)


def read_deep(path: Path) -> np.ndarray:
    """What the file holds, at its own depth, RGB(A) order (OpenCV's own decoders)."""
    pixels = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    return np.concatenate([pixels[..., 2::-1], pixels[..., 3:]], axis=2)


def lightness(rgb: np.ndarray) -> np.ndarray:
    top = 65535.0 if rgb.dtype == np.uint16 else 255.0
    tensor = torch.from_numpy(rgb[..., :3].astype(np.float64) / top).permute(2, 0, 1)[None]
    return rgb_to_lab(tensor.float())[0, 0].double().numpy()


def has_colour(rgb: np.ndarray) -> bool:
    values = rgb[..., :3].astype(np.float64)
    return float(np.abs(values - values.mean(axis=2, keepdims=True)).mean()) > 0.5


# ---------------------------------------------------------------------------------- alpha
@pytest.mark.parametrize("mode", ["RGBA", "LA"])
@pytest.mark.parametrize("ext", [".png", ".tif", ".webp"])
def test_alpha_is_carried(colouriser: Colouriser, tmp_path: Path, mode: str, ext: str) -> None:
    grey = grey_picture(1, H, W)
    alpha = np.linspace(0, 255, W, dtype=np.uint8)[None].repeat(H, axis=0)
    planes = [grey, grey, grey, alpha] if mode == "RGBA" else [grey, alpha]
    src = tmp_path / "in.png"
    Image.fromarray(np.dstack(planes), mode).save(src)
    assert colourise(colouriser, src, tmp_path / f"out{ext}") == []
    with Image.open(tmp_path / f"out{ext}") as out:
        assert out.mode == "RGBA"
        rgba = np.asarray(out)
    assert np.array_equal(rgba[..., 3], alpha)
    assert has_colour(rgba)
    if ext != ".webp":  # lossless: the colour is exactly that of the grey alone
        assert np.array_equal(rgba[..., :3], colouriser.colourise_image(grey))


@pytest.mark.parametrize("ext", [".jpg", ".bmp"])
def test_alpha_that_cannot_be_kept_is_named(
    colouriser: Colouriser, tmp_path: Path, ext: str
) -> None:
    grey = grey_picture(2, H, W)
    src = tmp_path / "in.png"
    Image.fromarray(np.dstack([grey, np.full_like(grey, 128)]), "LA").save(src)
    notices = colourise(colouriser, src, tmp_path / f"out{ext}")
    assert len(notices) == 1 and "transparency (" in notices[0]
    with Image.open(tmp_path / f"out{ext}") as out:
        assert out.mode == "RGB"


# --------------------------------------------------------------------------------- 16 bits
def _save_deep(path: Path, grey: np.ndarray, kind: str) -> None:
    if kind == "grey":
        Image.fromarray(grey).save(path)  # Pillow: mode I;16
    elif kind == "rgb":
        cv2.imwrite(str(path), np.dstack([grey] * 3))  # 48-bit RGB, which Pillow reads at 8
    else:
        cv2.imwrite(str(path), np.dstack([grey] * 3 + [grey[::-1, ::-1]]))  # 64-bit RGBA


@pytest.mark.parametrize("kind", ["grey", "rgb", "rgba"])
@pytest.mark.parametrize("src_ext", [".png", ".tif"])
@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_precision_is_kept(
    colouriser: Colouriser, tmp_path: Path, kind: str, src_ext: str, ext: str
) -> None:
    grey = grey16()
    src = tmp_path / f"in{src_ext}"
    _save_deep(src, grey, kind)
    assert colourise(colouriser, src, tmp_path / f"out{ext}") == []
    out = read_deep(tmp_path / f"out{ext}")
    assert out.dtype == np.uint16 and out.shape == (H, W, 4 if kind == "rgba" else 3)
    if kind == "rgba":
        assert np.array_equal(out[..., 3], grey[::-1, ::-1])
    assert has_colour(out)
    # The output's lightness is the input's at 16-bit precision; 8-bit output is ~0.1 L off.
    L_in = grey_to_l(torch.from_numpy(grey / 65535.0)).double().numpy()
    unclipped = ((out[..., :3] > 0) & (out[..., :3] < 65535)).all(axis=2)
    assert unclipped.mean() > 0.5
    assert np.abs(lightness(out) - L_in)[unclipped].max() < 0.01


def test_16_bit_into_an_8_bit_format_is_named(colouriser: Colouriser, tmp_path: Path) -> None:
    src = tmp_path / "in.tif"
    _save_deep(src, grey16(), "grey")
    notices = colourise(colouriser, src, tmp_path / "out.jpg")
    assert notices == [f"{tmp_path / 'out.jpg'} does not keep all of in.tif: "
                       "16-bit precision (JPEG holds 8 bits)"]  # fmt: skip
    assert read_deep(tmp_path / "out.jpg").dtype == np.uint8


# ------------------------------------------------------------------------------- metadata
def archive_jpeg(path: Path, icc: bytes = SRGB) -> Path:
    """A scan as archives publish it: rights and credit in XMP, who and when in EXIF, an ICC
    profile, 300 dpi, a comment, and a picture stored sideways (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x013B] = "Ann Artist"
    exif[0x8298] = "Public domain"
    exif[0x0131] = "ScanSoft 2"
    exif.get_ifd(0x8769).update({0x9003: "1931:05:04 10:00:00", 0xA001: 0xFFFF})
    Image.fromarray(grey_picture(3, H, W)).save(
        path, exif=exif, xmp=XMP, icc_profile=icc, dpi=(300, 300), comment=b"Box 12", quality=95
    )
    return path


# What each output format holds of archive_jpeg's metadata: everything but these.
NOT_HELD = {
    ".jpg": [],
    ".png": [],
    ".tif": ["text (Comment)"],
    ".webp": ["resolution (dpi)", "text (Comment)"],
}


@pytest.mark.parametrize("ext", list(NOT_HELD))
def test_metadata_is_carried(colouriser: Colouriser, tmp_path: Path, ext: str) -> None:
    src = archive_jpeg(tmp_path / "scan.jpg")
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    dst = tmp_path / f"out{ext}"
    notices = colourise(colouriser, src, dst)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before  # the input is never touched
    expected = [f"{dst} does not keep all of scan.jpg: {'; '.join(NOT_HELD[ext])}"]
    assert notices == (expected if NOT_HELD[ext] else [])
    with Image.open(dst) as out:
        assert out.size == (H, W)  # turned upright: W x H stored, H x W shown
        exif, info = out.getexif(), dict(out.info)
        sub = exif.get_ifd(0x8769)  # a TIFF's is read from the open file
        text = dict(getattr(out, "text", {}))
    assert exif[0x013B] == "Ann Artist" and exif[0x8298] == "Public domain"
    assert sub[0x9003] == "1931:05:04 10:00:00"
    assert sub[0xA001] == 1  # the colour is sRGB, whatever the scan said
    assert exif[0x0131] == colouriser.tag  # the provenance tag, in place of the scanner's name
    assert exif.get(0x0112, 1) == 1  # upright: nothing may turn it again
    assert b"Courtesy of the Archive" in info["xmp"] and b"Public domain" in info["xmp"]
    assert b'tiff:Orientation="1"' in info["xmp"]
    assert info["icc_profile"] == SRGB
    if ext != ".webp":
        assert info["dpi"] == pytest.approx((300, 300), abs=0.01)
    if ext == ".jpg":
        assert info["comment"] == b"Box 12"
    if ext == ".png":
        assert text["Comment"] == "Box 12" and text["Software"] == colouriser.tag


def test_png_text_and_metadata_round_trip(colouriser: Colouriser, tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    grey = grey_picture(4, H, W)
    info = PngInfo()
    info.add_text("Title", "Harbour, 1931")
    info.add_itxt("Author", "Åsa Ström")
    info.add_itxt("XML:com.adobe.xmp", XMP_UPRIGHT.decode())
    src = tmp_path / "in.png"
    Image.fromarray(grey).save(src, pnginfo=info, icc_profile=SRGB, dpi=(600, 600))
    assert colourise(colouriser, src, tmp_path / "out.png") == []
    with Image.open(tmp_path / "out.png") as out:
        assert out.text["Title"] == "Harbour, 1931" and out.text["Author"] == "Åsa Ström"
        assert out.text["Software"] == colouriser.tag
        assert b"Courtesy of the Archive" in out.info["xmp"]
        assert out.info["icc_profile"] == SRGB
        assert out.info["dpi"] == pytest.approx((600, 600), abs=0.01)
        assert np.array_equal(np.asarray(out), colouriser.colourise_image(grey))
    notices = colourise(colouriser, src, tmp_path / "out.jpg")
    assert notices == [f"{tmp_path / 'out.jpg'} does not keep all of in.png: text (Title, Author)"]


def test_a_profile_other_than_srgb_is_replaced_and_named(
    colouriser: Colouriser, tmp_path: Path
) -> None:
    """The colour is made in sRGB: keeping another profile would have viewers misread it."""
    other = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    src = archive_jpeg(tmp_path / "scan.jpg", icc=other)
    notices = colourise(colouriser, src, tmp_path / "out.png")
    assert len(notices) == 1 and "ICC profile 'Lab identity built-in'" in notices[0]
    with Image.open(tmp_path / "out.png") as out:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(out.info["icc_profile"]))
    assert "sRGB" in ImageCms.getProfileDescription(profile)


def test_what_a_format_cannot_keep_is_one_notice(model: Path, tmp_path: Path) -> None:
    """16-bit RGBA with XMP into BMP, from the command line: one line names every loss."""
    src = tmp_path / "in.png"
    _save_deep(src, grey16(), "rgba")
    data, xmp = src.read_bytes(), b"XML:com.adobe.xmp\0\0\0\0\0" + XMP_UPRIGHT
    chunk = (
        struct.pack(">I", len(xmp)) + b"iTXt" + xmp + struct.pack(">I", zlib.crc32(b"iTXt" + xmp))
    )
    src.write_bytes(data[:33] + chunk + data[33:])  # an iTXt chunk right after IHDR
    result = CliRunner().invoke(
        main, ["run", str(src), "-o", str(tmp_path / "out.bmp"), "--model", str(model),
               "--resolution", "64"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    notices = [line for line in result.output.splitlines() if line.startswith("notice:")]
    assert notices == [
        f"notice: {tmp_path / 'out.bmp'} does not keep all of in.png: transparency (BMP has "
        "none); 16-bit precision (BMP holds 8 bits); XMP; the provenance tag (BMP holds no "
        "metadata)"
    ]


def test_further_pages_and_iptc_are_named(colouriser: Colouriser, tmp_path: Path) -> None:
    pages = [Image.fromarray(grey_picture(i, H, W)) for i in range(3)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    notices = colourise(colouriser, tmp_path / "pages.tif", tmp_path / "pages_out.tif")
    assert len(notices) == 1 and "pages 2-3 (the first alone is colourised)" in notices[0]
    jpeg = archive_jpeg(tmp_path / "scan.jpg").read_bytes()
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x00"
    segment = b"\xff\xed" + struct.pack(">H", len(iptc) + 2) + iptc
    (tmp_path / "iptc.jpg").write_bytes(jpeg[:2] + segment + jpeg[2:])
    notices = colourise(colouriser, tmp_path / "iptc.jpg", tmp_path / "iptc_out.jpg")
    assert len(notices) == 1 and "IPTC/Photoshop records" in notices[0]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_turns_as_exif_says(orientation: int) -> None:
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    assert np.array_equal(upright(pixels, orientation), np.asarray(ImageOps.exif_transpose(image)))


def test_a_damaged_later_page_is_named_and_the_first_colourised(
    colouriser: Colouriser, tmp_path: Path
) -> None:
    """A second page without its size tags: Pillow cannot count the pages (TypeError)."""
    page = Image.fromarray(grey_picture(0, H, W))
    src = tmp_path / "pages.tif"
    page.save(src, save_all=True, append_images=[page])
    data = bytearray(src.read_bytes())
    first = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, first)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * count)[0]
    for i in range(struct.unpack_from("<H", data, second)[0]):
        entry = second + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into("<H", data, entry, 0x9999)
    src.write_bytes(bytes(data))
    notices = colourise(colouriser, src, tmp_path / "out.png")
    assert len(notices) == 1 and "pages after the first (damaged" in notices[0]
    assert has_colour(np.asarray(Image.open(tmp_path / "out.png")))


def test_a_float_still_is_read_as_0_to_1(colouriser: Colouriser, tmp_path: Path) -> None:
    grey = grey16().astype(np.float32) / 65535  # a 32-bit float TIFF, 0 black to 1 white
    Image.fromarray(grey).save(tmp_path / "float.tif")
    notices = colourise(colouriser, tmp_path / "float.tif", tmp_path / "out.png")
    assert len(notices) == 1 and "32-bit float precision (read at 16 bits)" in notices[0]
    out = read_deep(tmp_path / "out.png")
    L_in = grey_to_l(torch.from_numpy(grey.astype(np.float64))).double().numpy()
    unclipped = ((out > 0) & (out < 65535)).all(axis=2)
    assert np.abs(lightness(out) - L_in)[unclipped].max() < 0.01

    Image.fromarray(grey * 255).save(tmp_path / "float255.tif")  # no agreed meaning: refused
    result = CliRunner().invoke(
        main, ["run", str(tmp_path / "float255.tif"), "-o", str(tmp_path / "o.png")]
    )
    assert result.exit_code != 0 and "float samples from" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o.png").exists()
    over = grey.copy()
    over[0, 0], over[0, 1] = -2e-4, 1.0003  # a processing step's overshoot: clipped
    Image.fromarray(over).save(tmp_path / "over.tif")
    assert len(colourise(colouriser, tmp_path / "over.tif", tmp_path / "over.png")) == 1
