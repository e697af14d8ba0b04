"""What a file is by its content, not its name: a still image or a playlist by its first bytes (before any decoder
runs), and a still image by its codec and frame count once opened. Light: no av or cv2 here."""

from __future__ import annotations

from pathlib import Path

from model.labels import MIN_WINDOW

SNIFF_BYTES = 16
# Codecs of pictures rather than of motion: one of these with fewer frames than a window is a still image.
IMAGE_CODECS = frozenset(
    {"png", "apng", "mjpeg", "jpegls", "jpeg2000", "jpegxl", "bmp", "webp", "tiff", "gif", "qoi", "pam", "ppm", "pgm"}
    | {"pbm", "pgmyuv", "sgi", "targa", "dds", "exr", "hdr", "xbm", "xpm", "pcx", "sunrast", "photocd", "heif"}
)
_IMAGE_HEIF_BRANDS = (b"heic", b"heix", b"mif1", b"msf1", b"avif")


def sniff(head: bytes) -> str | None:
    """What the file's first bytes say it is when that is not a video: `PNG`, `JPEG`, … for still images,
    `playlist` for an HLS/M3U playlist; None otherwise (a video container, or unknown)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith(b"BM") and len(head) >= 10 and head[6:10] == b"\x00\x00\x00\x00":
        return "BMP"
    if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_HEIF_BRANDS:
        return "HEIF"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"#EXTM3U"):
        return "playlist"
    return None


def sniff_file(path: str | Path) -> str | None:
    """`sniff` of the file's first bytes; None when it cannot be read (opening it says why)."""
    try:
        with open(path, "rb") as handle:
            return sniff(handle.read(SNIFF_BYTES))
    except (OSError, ValueError):
        return None


def is_still(demuxer: str, codec: str, frames: int | None) -> bool:
    """A single frame of anything, an image codec with fewer frames than a window, or what FFmpeg's image readers
    (`png_pipe`, `image2`, …) opened."""
    if frames == 1 or demuxer in ("image2", "image2pipe") or demuxer.endswith("_pipe"):
        return True
    return codec in IMAGE_CODECS and frames is not None and frames < MIN_WINDOW
