"""Image files to uint8 tensors: the one place this project decodes an image.

torchcodec, the decoder library torchvision names as the successor of its deprecated
``torchvision.io`` decoders, reads JPEG (on the CPU with libjpeg-turbo, or a whole batch in one
nvJPEG call on CUDA), PNG, WebP, GIF and AVIF. What it cannot read (BMP, PPM, TIFF, a CMYK JPEG)
is decoded by PIL. Every image comes out as RGB, (3, H, W) uint8; a file neither reads is a
DataError naming it, the same line on every path.

torchcodec is imported on first use, so ``--decode pil`` and cifar.py run without it; a path
that needs it says so in one line (``require_torchcodec``).
"""
import io
from typing import Optional

import numpy as np
import torch
from PIL import Image

from ..files import NotRegularFile, TooLarge, read_regular
from ..settings.values import DEFAULT_MAX_PIXELS
from .errors import DataError
from .jpeg_header import jpeg_size

__all__ = ["MissingDecoder", "require_torchcodec", "read_bytes", "decode_file", "decode_batch",
           "is_jpeg", "pil_rgb", "unreadable_image", "set_max_pixels",
           "max_pixels"]

# Pillow's modes of 16-bit grey (a 16-bit grey PNG opens as I;16, or as I in older Pillows).
# Every path takes a 16-bit image by its high byte, as Pillow itself reads 16-bit RGB and as
# torchcodec's 16-bit output is reduced here; convert("RGB") would clip them to white instead.
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")

# The most pixels an image may have, on every decode path: by default Pillow's own limit on
# decompression bombs (twice its MAX_IMAGE_PIXELS, 178,956,970), checked from the header before
# anything is decoded; --max-pixels moves it (set_max_pixels). This module checks it itself for
# Pillow and torchcodec alike, so Pillow's own check, a second limit the flag could not move, is
# turned off: every image this project opens goes through here.
Image.MAX_IMAGE_PIXELS = None
_limit = {"pixels": DEFAULT_MAX_PIXELS}


def set_max_pixels(limit: int) -> None:
    """Refuse, from now on in this process, images of more than ``limit`` pixels."""
    _limit["pixels"] = int(limit)


def max_pixels() -> int:
    """The pixel limit in force (a loader's workers start with their parent's)."""
    return _limit["pixels"]


class MissingDecoder(DataError):
    """A decoding path that needs torchcodec, which is not installed."""


_decoders = None


def _torchcodec():
    """torchcodec.decoders, imported once; None where it is not installed."""
    global _decoders
    if _decoders is None:
        try:
            import torchcodec.decoders as decoders
        except (ImportError, OSError, RuntimeError):  # absent, or its native library fails
            decoders = False
        _decoders = decoders
    return _decoders or None


def require_torchcodec(what: str) -> None:
    """One line when ``what`` (a --decode path) needs torchcodec and it is missing."""
    if _torchcodec() is None:
        raise MissingDecoder(f"{what} decodes with torchcodec, which is not installed here "
                             f"(pip install torchcodec); --decode pil needs only PIL")


# No image file of a training set is near this; a larger one is refused before it is read.
MAX_IMAGE_BYTES = 2 ** 30


def _file_bytes(path: str) -> bytes:
    """The bytes of an image file: a regular file only (a FIFO would block the reader for
    ever, a device such as /dev/zero never end), of at most MAX_IMAGE_BYTES."""
    try:
        return read_regular(path, MAX_IMAGE_BYTES)
    except NotRegularFile:
        raise DataError(f"cannot read image {path}: not a regular file (a FIFO, device or "
                        f"socket)") from None
    except TooLarge as e:
        raise DataError(f"cannot read image {path}: {e.size:,} bytes, more than "
                        f"{e.limit:,}") from None
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e.strerror or e}") from e


def read_bytes(path: str) -> torch.Tensor:
    """A file's bytes as a 1-D uint8 tensor (ordinary memory: it crosses from a DataLoader
    worker through shared memory, which a memory-mapped tensor does not survive)."""
    data = _file_bytes(path)
    if not data:
        raise DataError(f"cannot read image {path}: the file is empty")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)  # writable, as torch asks


def unreadable_image(path: str, error: Exception) -> DataError:
    """The DataError of an image file a decoder could not read, worded alike on every path:
    the file, and the decoder's reason (without the object reprs and source locations decoders
    put in their messages)."""
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    elif type(error).__name__ == "UnidentifiedImageError" or "unrecognized image format" in str(
            error):
        reason = ("not an image in a format this project reads (JPEG, PNG, WebP, GIF, BMP, "
                  "TIFF, ...)")
    else:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].split(", ")[-1]
    return DataError(f"cannot read image {path}: {reason}")


def _check_size(width: int, height: int, path: str) -> None:
    pixels, limit = width * height, max_pixels()
    if pixels > limit:
        raise DataError(f"cannot read image {path}: {width}x{height} is {pixels:,} pixels, more "
                        f"than the limit of {limit:,} (a decompression bomb?); --max-pixels N "
                        f"raises it")


def _rgb(image: Image.Image, path: str) -> Image.Image:
    """``image`` (opened: its header read, nothing decoded) as RGB, once its size is checked:
    16-bit grey by its high byte; a float or 32-bit image is refused, having no 8-bit reading."""
    _check_size(*image.size, path)
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise DataError(f"image {path} has 32-bit pixels (more than 16 bits); convert it to "
                            f"8-bit RGB or grey")
        return Image.fromarray((values >> 8).astype(np.uint8), "L").convert("RGB")
    if image.mode == "F":
        raise DataError(f"image {path} has floating-point pixels; convert it to 8-bit RGB or "
                        f"grey")
    return image.convert("RGB")


def pil_rgb(path: str) -> Image.Image:
    """An image file as an RGB PIL image (the --decode pil path)."""
    try:
        return _rgb(Image.open(io.BytesIO(_file_bytes(path))), path)
    except DataError:
        raise
    except Exception as e:
        raise unreadable_image(path, e) from e


def is_jpeg(data: torch.Tensor) -> bool:
    return data.numel() > 2 and int(data[0]) == 0xFF and int(data[1]) == 0xD8


def _with_pil(data: torch.Tensor, path: str) -> torch.Tensor:
    """PIL's decoding. A file it cannot read either is reported with PIL's reason, so every
    path (--decode pil decodes with PIL alone) gives the same line for the same file."""
    try:
        array = np.asarray(_rgb(Image.open(io.BytesIO(data.numpy().tobytes())), path))
    except DataError:
        raise
    except Exception as e:
        raise unreadable_image(path, e) from e
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _checked(image: torch.Tensor, path: str) -> torch.Tensor:
    """torchcodec's image as uint8: 16-bit by its high byte, as Pillow reads 16-bit RGB."""
    if image.dtype == torch.uint16:
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    elif image.dtype != torch.uint8:
        raise DataError(f"image {path} has {8 * image.element_size()}-bit pixels (more than 16 "
                        f"bits); convert it to 8-bit RGB or grey")
    return image[0] if image.dim() == 4 else image  # an animation: its first frame, as PIL


def _check_pixels(data: torch.Tensor, path: str) -> None:
    """The pixel limit, checked from the header alone before torchcodec decodes: a
    decompression bomb, a small file whose header asks for gigabytes, is refused on every path
    alike. A JPEG's size is read from its frame header (jpeg_size, the fields Pillow reads);
    any other file, or a JPEG header that does not lead to one, is opened by Pillow, and a file
    Pillow cannot parse either is torchcodec's to judge."""
    size = jpeg_size(memoryview(data.numpy()))
    if size is None:
        try:
            with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
                size = image.size
        except Exception:
            return
    _check_size(*size, path)


def decode_file(data: torch.Tensor, path: str) -> torch.Tensor:
    """The RGB (3, H, W) uint8 image of a file's bytes (``path`` names it in errors): torchcodec
    where it reads the format, else PIL."""
    decoders = _torchcodec()
    if decoders is not None:
        _check_pixels(data, path)
        try:
            return _checked(decoders.decode_image(data, mode="RGB", output_dtype="auto"), path)
        except DataError:
            raise
        except (RuntimeError, ValueError):
            pass  # a format or variant it does not read, or a broken file: PIL's verdict
    return _with_pil(data, path)


def decode_batch(datas: list, paths: list, device: torch.device,
                 jpeg_on_device: Optional[bool] = None) -> list:
    """RGB (3, H, W) uint8 images on ``device`` of files' bytes: the JPEGs in one batched call
    on the device (nvJPEG on CUDA), the rest one by one on the CPU and moved."""
    device = torch.device(device)
    decoders = _torchcodec()
    images = [None] * len(datas)
    jpegs = [k for k, d in enumerate(datas) if is_jpeg(d)] if decoders is not None else []
    for k in jpegs:
        _check_pixels(datas[k], paths[k])
    if jpegs:
        try:
            decoded = decoders.decode_jpeg([datas[k] for k in jpegs], mode="RGB", device=device)
        except (RuntimeError, ValueError):
            decoded = [None] * len(jpegs)  # one file spoils a batch: each on its own, below
        for k, image in zip(jpegs, decoded):
            images[k] = image
    for k, data in enumerate(datas):
        if images[k] is None:
            images[k] = decode_file(data, paths[k]).to(device, non_blocking=True)
    return images
