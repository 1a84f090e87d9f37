"""Specification of the JPEG frame-header reader (utils/data/jpeg_header.py): the size it reads is
Pillow's for every JPEG Pillow writes, and damaged or foreign bytes give None, never a wrong size
or an exception."""
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import utils.data.decode as decode
from utils.data.errors import DataError
from utils.data.jpeg_header import jpeg_size


def jpeg(width=37, height=23, mode="RGB", **options) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def exif() -> bytes:
    data = Image.Exif()
    data[0x010F] = "a camera maker, making the segment before the frame longer" * 20
    return data.tobytes()


@pytest.mark.parametrize("mode, options", [
    ("RGB", {}),
    ("RGB", {"progressive": True}),  # SOF2
    ("RGB", {"subsampling": 0, "quality": 95}),
    ("L", {}),
    ("CMYK", {}),
    ("RGB", {"exif": exif(), "icc_profile": b"\0" * 70_000}),  # APP1 and APP2 segments first
    ("RGB", {"optimize": True}),
])
def test_the_size_is_pillows_for_the_jpegs_pillow_writes(mode, options):
    for width, height in ((37, 23), (1, 1), (500, 375), (65_500, 2)):
        data = jpeg(width, height, mode, **options)
        assert jpeg_size(data) == Image.open(io.BytesIO(data)).size == (width, height)


def test_it_reads_a_memoryview_of_a_tensors_bytes():
    data = torch.frombuffer(bytearray(jpeg(40, 30)), dtype=torch.uint8)
    assert jpeg_size(memoryview(data.numpy())) == (40, 30)


def test_fill_bytes_before_a_marker_are_skipped():
    data = jpeg(40, 30)
    assert jpeg_size(data[:2] + b"\xff\xff\xff" + data[2:]) == (40, 30)


def test_every_truncation_gives_none_or_the_size():
    data = jpeg(40, 30, exif=exif())
    sof = data.index(b"\xff\xc0")
    for end in range(len(data)):
        assert jpeg_size(data[:end]) == ((40, 30) if end >= sof + 9 else None), end


@pytest.mark.parametrize("damage", [
    lambda d: b"\x89PNG\r\n\x1a\n" + d[8:],  # not a JPEG
    lambda d: d[:2] + b"\x00" + d[3:],  # no marker where a segment should start
    lambda d: d[:4] + b"\xff\xff" + d[6:],  # a length past the end of the file
    lambda d: d[:4] + b"\x00\x01" + d[6:],  # a length shorter than its own two bytes
    lambda d: d[:2] + b"\xff\xda\x00\x02" + d[2:],  # a scan before any frame
    lambda d: d.replace(b"\xff\xc0", b"\xff\xd9"),  # no frame at all
    lambda d: b"",
])
def test_damaged_or_foreign_bytes_give_none(damage):
    assert jpeg_size(damage(jpeg())) is None


def test_a_frame_with_no_height_leaves_the_size_to_a_fuller_parser():
    """A height of 0 means a DNL segment after the first scan gives it."""
    data = bytearray(jpeg(40, 30))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7] = b"\x00\x00"
    assert jpeg_size(bytes(data)) is None


def png_claiming(width: int, height: int) -> torch.Tensor:
    """A small PNG whose header (IHDR, its CRC mended) claims ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(data[ihdr:ihdr + 17]))
    return torch.frombuffer(data, dtype=torch.uint8)


class NoDecoder:
    """Stands in for torchcodec's decoders: a decode here means the header check let it by."""
    def decode_image(self, *args, **kwargs):
        raise AssertionError("decoded before the pixel limit was checked")


@pytest.mark.parametrize("data", [png_claiming(20000, 20000), png_claiming(1, 200_000_000)])
def test_a_file_that_is_not_a_jpeg_has_its_size_checked_from_its_header_before_decoding(
        monkeypatch, data):
    """The pixel limit of a PNG is read by Pillow, as before the JPEG reader."""
    monkeypatch.setattr(decode, "_torchcodec", NoDecoder)
    with pytest.raises(DataError, match="is .* pixels, more than the limit"):
        decode.decode_file(data, "bomb.png")
