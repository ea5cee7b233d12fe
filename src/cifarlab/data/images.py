"""Decoding one image file to an RGB uint8 array, with every mode conversion stated.

Conversions (documented in the README):
- grayscale (L), palette (P), CMYK, YCbCr, LAB, HSV, 1-bit -> RGB through Pillow's ``convert("RGB")``;
- alpha (RGBA, LA, PA) is dropped, not composited;
- 16-bit and 32-bit integer grayscale (I;16, I) is scaled by its type's maximum to 0..255, then replicated to RGB;
- float grayscale (F) is assumed to be in [0, 1];
- images whose side differs from ``size`` are resized (shorter side to ``size``, bicubic with antialias) and
  centre-cropped to ``size`` x ``size``; a JPEG larger than twice ``size`` is first reduced by libjpeg's own
  1/2-1/8 DCT scaling (``Image.draft``), never below ``size``.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# Pillow refuses images above 2x this as decompression bombs; 8k x 8k is plenty for a small-image tool.
MAX_PIXELS = 8192 * 8192


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image; the message says why."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.clip(np.asarray(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        return img.convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_HEAD = 33  # signature (8), IHDR length and type (8), its 13 bytes of data, its CRC (4)
# the bit depths each PNG colour type allows (the PNG specification, table 11.1)
PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _png_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, which the format puts first; None for anything else and for a
    header Pillow should judge: a wrong CRC, an invalid bit depth or colour type, a zero side or more than
    MAX_PIXELS (Pillow then reads it and says why, or refuses it as a decompression bomb)."""
    if len(head) < PNG_HEAD or head[:8] != PNG_SIGNATURE or head[8:16] != b"\x00\x00\x00\rIHDR":
        return None
    if zlib.crc32(head[12:29]) != struct.unpack(">I", head[29:33])[0]:
        return None
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    if depth not in PNG_DEPTHS.get(colour, ()) or not 0 < width * height <= MAX_PIXELS:
        return None
    return width, height


def image_size(data: bytes | str) -> tuple[int, int]:
    """(width, height) from the header only; ``data`` is the file's bytes or its path (then only the header is
    read from disk, which makes a size scan of a folder cheap). A PNG's size is read from its IHDR chunk directly
    (a few us instead of Pillow's 30 us an image: a 60,000-image scan took 2 s) when its CRC and fields are valid;
    the decode still reads it all."""
    if isinstance(data, bytes) or data.lower().endswith(".png"):  # a path read once more only where it may pay
        if (size := _png_size(_head(data, PNG_HEAD))) is not None:
            return size
    try:
        if isinstance(data, str):
            if os.path.getsize(data) == 0:
                raise ImageDecodeError("empty file (0 bytes)")
            with Image.open(data) as img:
                return img.size
        if not data:
            raise ImageDecodeError("empty file (0 bytes)")
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(_reason(exc, _head(data))) from None


def _head(data: bytes | str, n: int = 16) -> bytes:
    """The first ``n`` bytes (the format's magic number for an error message, or a PNG's header); b"" for a file
    that cannot be read (Pillow's open then names the error)."""
    if isinstance(data, bytes):
        return data[:n]
    try:
        with open(data, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def decode(data: bytes | str, size: int | None = None) -> np.ndarray:
    """Decode image bytes (or the file at a path) to an (H, W, 3) uint8 array; resize to ``size`` x ``size`` when
    given and different."""
    if isinstance(data, str):
        try:
            data = Path(data).read_bytes()
        except OSError as exc:
            raise ImageDecodeError(f"cannot read the file ({exc.strerror or exc})") from None
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageDecodeError(f"{img.width}x{img.height} is over the {MAX_PIXELS} pixel limit")
                if size and img.format == "JPEG":
                    # libjpeg decodes at 1/2, 1/4 or 1/8 scale while both sides stay >= size (its DCT scaling is
                    # an antialiased reduction): a full-size photo for a 160-px cache decodes several times faster
                    img.draft("RGB", (size, size))
                img.load()
                rgb = _to_rgb(img)
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(_reason(exc, data)) from None
    if size and rgb.size != (size, size):
        rgb = _resize_center_crop(rgb, size)
    return np.asarray(rgb, dtype=np.uint8)


def _resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP", b"RIFF": "WEBP"}


def _reason(exc: BaseException, data: bytes = b"") -> str:
    if isinstance(exc, UnidentifiedImageError):
        fmt = next((name for magic, name in MAGIC.items() if data.startswith(magic)), None)
        return f"truncated or corrupt {fmt} file" if fmt else "not a recognised image format"
    text = str(exc).split("\n")[0]
    if "truncated" in text.lower() or isinstance(exc, SyntaxError):
        return f"truncated or corrupt image ({text})"
    return f"cannot decode image ({type(exc).__name__}: {text})"
