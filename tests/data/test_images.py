"""data.images: a PNG's size comes from its IHDR chunk without Pillow, equal to what Pillow reads, for every mode and
for bytes and paths; anything else, or a damaged header, goes through Pillow and its error."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cifarlab.data import images
from cifarlab.data.images import ImageDecodeError, image_size


def _png(mode: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16", "1"])
def test_png_size_is_read_from_the_header_and_equals_pillows(mode, tmp_path, monkeypatch):
    data = _png(mode, (37, 21))
    with Image.open(io.BytesIO(data)) as img:
        expected = img.size
    path = tmp_path / "a.PNG"
    path.write_bytes(data)

    def no_pillow(*args, **kwargs):
        raise AssertionError("Pillow was asked for a PNG's size")

    monkeypatch.setattr(images.Image, "open", no_pillow)
    assert image_size(data) == expected == (37, 21) and image_size(str(path)) == (37, 21)


def test_other_formats_and_damaged_png_headers_go_through_pillow(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((9, 14, 3), np.uint8)).save(buf, format="JPEG")
    assert image_size(buf.getvalue()) == (14, 9)
    zero_width = bytearray(_png("RGB", (5, 5)))
    zero_width[16:20] = b"\x00\x00\x00\x00"  # IHDR width 0: not read directly; Pillow refuses it
    with pytest.raises(ImageDecodeError):
        image_size(bytes(zero_width))
    with pytest.raises(ImageDecodeError, match="empty"):
        image_size(b"")
    empty = tmp_path / "e.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty"):
        image_size(str(empty))
    truncated = tmp_path / "t.png"
    truncated.write_bytes(_png("RGB", (5, 5))[:20])  # signature, no whole IHDR: Pillow's error
    with pytest.raises(ImageDecodeError):
        image_size(str(truncated))


def _header(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG signature and an IHDR chunk with a valid CRC (no image data)."""
    data = b"IHDR" + struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return images.PNG_SIGNATURE + struct.pack(">I", 13) + data + struct.pack(">I", zlib.crc32(data))


def test_a_header_pillow_would_refuse_is_not_read_directly(monkeypatch):
    """A flipped bit (wrong CRC), an invalid bit depth and a bomb-sized image are left to Pillow, which refuses
    them: the size scan fails on them, naming why, as it did before the direct read."""
    flipped = bytearray(_png("RGB", (32, 32)))
    flipped[18] ^= 0x01  # a bit of the width: the IHDR CRC no longer matches
    for bad in (bytes(flipped), _header(32, 32, depth=3), _header(100_000, 100_000)):
        assert images._png_size(bad[:images.PNG_HEAD]) is None
        with pytest.raises(ImageDecodeError):
            image_size(bad)
    assert images._png_size(_header(640, 480)) == (640, 480)
