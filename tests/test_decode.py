"""Specification of image decoding (utils/data/decode.py): torchcodec's pixels are PIL's, what it
cannot read falls back to PIL, and every failure is one DataError naming the file."""
import io
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

import imagenet
import utils.data.decode as decode
from builders import make_image_folder, one_line_failure
from utils.data.errors import DataError
from utils.settings.values import DEFAULT_MAX_PIXELS
from utils.data.decode import decode_batch, decode_file, read_bytes


def encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def photo(h=120, w=160, seed=0, mode="RGB"):
    """A smooth picture with texture: random 16x16 colours upscaled (as CIFAR upscaled)."""
    small = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    return image.convert(mode)


def pil_pixels(data):
    rgb = Image.open(io.BytesIO(data.numpy().tobytes())).convert("RGB")
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


@pytest.mark.parametrize("fmt, options, mode", [
    ("JPEG", dict(quality=90), "RGB"), ("JPEG", dict(quality=75, subsampling=0), "RGB"),
    ("JPEG", dict(quality=95, subsampling=2), "RGB"), ("JPEG", dict(quality=85), "L"),
    ("JPEG", dict(quality=90, progressive=True), "RGB"), ("PNG", {}, "RGB"), ("PNG", {}, "L"),
    ("PNG", {}, "RGBA"), ("WEBP", dict(lossless=True), "RGB"),
])
def test_torchcodec_gives_pils_pixels(fmt, options, mode):
    data = encoded(photo(mode=mode), fmt, **options)
    image = decode_file(data, "x")
    assert image.dtype == torch.uint8 and image.shape == (3, 120, 160)
    assert torch.equal(image, pil_pixels(data))


@pytest.mark.parametrize("fmt", ["BMP", "PPM", "TIFF"])
def test_formats_torchcodec_does_not_read_fall_back_to_pil(fmt):
    data = encoded(photo(), fmt)
    assert torch.equal(decode_file(data, "x"), pil_pixels(data))


def test_a_cmyk_jpeg_falls_back_to_pil():
    data = encoded(photo(mode="CMYK"), "JPEG", quality=90)
    assert torch.equal(decode_file(data, "x"), pil_pixels(data))


@pytest.mark.parametrize("content, message", [
    (b"\xff\xd8\xff\xe0 broken jpeg", "cannot read image PATH"),
    (b"\x89PNG\r\n\x1a\n broken png", "cannot read image PATH"),
    (b"not an image at all", "cannot read image PATH"),
    (None, "has floating-point pixels"),
], ids=["jpeg", "png", "garbage", "float"])
def test_a_file_no_decoder_reads_is_a_data_error_naming_it(tmp_path, content, message):
    path = str(tmp_path / "bad.img")
    if content is None:
        Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(path, "TIFF")
    else:
        open(path, "wb").write(content)
    with pytest.raises(DataError, match=re.escape(message.replace("PATH", path))):
        decode_file(read_bytes(path), path)


def test_an_empty_or_missing_file_is_named(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=f"cannot read image {empty}: the file is empty"):
        read_bytes(str(empty))
    with pytest.raises(DataError, match="cannot read image .*missing.jpg: No such file"):
        read_bytes(str(tmp_path / "missing.jpg"))


def test_a_batch_decodes_jpegs_together_and_the_rest_alone():
    datas = [encoded(photo(seed=1), "JPEG", quality=90), encoded(photo(seed=2), "PNG"),
             encoded(photo(seed=3), "BMP"), encoded(photo(seed=4), "JPEG", quality=80)]
    images = decode_batch(datas, ["a", "b", "c", "d"], torch.device("cpu"))
    assert all(torch.equal(image, pil_pixels(d)) for image, d in zip(images, datas))
    broken = datas[:1] + [torch.frombuffer(bytearray(b"\xff\xd8\xff broken"), dtype=torch.uint8)]
    with pytest.raises(DataError, match="cannot read image broken.jpg"):
        decode_batch(broken, ["fine.jpg", "broken.jpg"], torch.device("cpu"))


def test_without_torchcodec_the_paths_that_need_it_say_so_and_pil_runs(tmp_path, capsys,
                                                                      monkeypatch):
    root = make_image_folder(str(tmp_path / "inet"), splits=(("train", 2), ("val", 1)),
                             ext="jpg")
    monkeypatch.setattr(decode, "_decoders", False)  # as if the import had failed
    common = ["-a", "l_resnet18", "--data", root, "--epochs", "1", "-j", "0", "--no-progress",
              "--train-batch", "6"]
    for path in ("cpu", "device"):
        code, line = one_line_failure(imagenet.main, common + ["--decode", path, "-c",
                                                               str(tmp_path / path)], capsys)
        assert code == 1 and line == (f"error: --decode {path} decodes with torchcodec, which "
                                      f"is not installed here (pip install torchcodec); "
                                      f"--decode pil needs only PIL")
    imagenet.main(common + ["--decode", "pil", "-c", str(tmp_path / "pil")])
    assert os.path.isfile(tmp_path / "pil" / "checkpoint.pth.tar")
    # Outside the paths that require it, decoding falls back to PIL.
    data = encoded(photo(), "JPEG", quality=90)
    assert torch.equal(decode_file(data, "x"), pil_pixels(data))


def jpeg_claiming(tmp_path, width, height):
    """A small JPEG whose header (SOF0) claims ``width`` x ``height`` pixels."""
    import io
    import numpy as np
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(data))
    return str(path)


def test_every_decode_path_refuses_a_decompression_bomb_from_its_header(tmp_path):
    """A 600-byte JPEG claiming 20000 x 20000 pixels: refused by every path alike (Pillow,
    torchcodec, a batch for the device), before any pixel is decoded."""
    from utils.data.image_files import read_rgb
    path = jpeg_claiming(tmp_path, 20000, 20000)
    data = decode.read_bytes(path)
    refusals = []
    for read in (lambda: read_rgb(path), lambda: decode.decode_file(data, path),
                 lambda: decode.decode_batch([data], [path], torch.device("cpu"))):
        with pytest.raises(DataError) as refused:
            read()
        refusals.append(str(refused.value))
    assert refusals == [f"cannot read image {path}: 20000x20000 is 400,000,000 pixels, more than "
                        f"the limit of 178,956,970 (a decompression bomb?); --max-pixels N raises "
                        f"it"] * 3


def test_the_default_pixel_limit_is_pillows_own():
    import subprocess
    import sys
    pillows = subprocess.run([sys.executable, "-c", "from PIL import Image; "
                              "print(2 * Image.MAX_IMAGE_PIXELS)"], capture_output=True,
                             text=True, check=True).stdout
    assert int(pillows) == DEFAULT_MAX_PIXELS == 178_956_970


def test_max_pixels_moves_the_limit_of_every_path(tmp_path):
    from utils.data.image_files import read_rgb
    path = jpeg_claiming(tmp_path, 300, 200)  # 60,000 pixels, a header over 8x8 of data
    data = decode.read_bytes(path)
    try:
        decode.set_max_pixels(50_000)
        for read in (lambda: read_rgb(path), lambda: decode.decode_file(data, path)):
            with pytest.raises(DataError, match="300x200 is 60,000 pixels, more than the limit "
                                                "of 50,000"):
                read()
        decode.set_max_pixels(60_000)  # at the limit: decoded (libjpeg fills what is missing)
        assert decode.decode_file(data, path).shape == (3, 200, 300)
        assert read_rgb(path).size == (300, 200)
    finally:
        decode.set_max_pixels(DEFAULT_MAX_PIXELS)


def png16(path, array):
    """A 16-bit PNG (grey for (H, W), RGB for (H, W, 3)), written by hand: Pillow writes 16-bit
    grey but not 16-bit RGB."""
    import struct
    import zlib
    height, width = array.shape[:2]
    raw = b"".join(b"\0" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    header = struct.pack(">IIBBBBB", width, height, 16, 0 if array.ndim == 2 else 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))
    return str(path)


@pytest.mark.parametrize("shape", [(6, 9), (6, 9, 3)], ids=["grey", "rgb"])
def test_a_16_bit_png_is_read_by_its_high_byte_on_every_path(tmp_path, shape):
    from utils.data.image_files import read_rgb
    values = np.random.default_rng(0).integers(0, 65536, shape, dtype=np.uint16)
    path = png16(tmp_path / "wide.png", values)
    high = torch.from_numpy((values >> 8).astype(np.uint8))
    expected = high.expand(3, *shape) if len(shape) == 2 else high.permute(2, 0, 1)
    by_pil = torch.from_numpy(np.asarray(read_rgb(path)).copy()).permute(2, 0, 1)
    by_torchcodec = decode.decode_file(decode.read_bytes(path), path)
    assert torch.equal(by_pil, expected) and torch.equal(by_torchcodec, expected)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_an_image_that_is_no_regular_file_is_one_line_and_never_blocks(tmp_path, kind):
    import os
    import time
    from utils.data.image_files import read_rgb
    path = str(tmp_path / "x.jpg")
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    started = time.monotonic()
    for read in (decode.read_bytes, read_rgb):
        with pytest.raises(DataError, match="not a regular file"):
            read(path)
    assert time.monotonic() - started < 5
