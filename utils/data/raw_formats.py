"""Readers for the raw files torchvision downloads, without their extra dependencies and without
trusting them: CIFAR's python batches (pickles, read by an unpickler that can build only plain
data and numpy arrays), IDX (MNIST, Fashion-MNIST, KMNIST; plain or gzipped) and MATLAB 5 .mat
(SVHN, which torchvision reads through scipy; a few dozen lines here spare every user that
install)."""
import gzip
import os
import pickle
import struct
import zlib
from typing import Optional

import numpy as np

from ..files import open_regular

__all__ = ["FormatError", "read_idx", "read_mat", "read_cifar_pickle"]


class FormatError(ValueError):
    """A file that is not what its name says."""


def _pickled_array_builders():
    """The callables numpy's own pickles of arrays, dtypes and scalars name, keyed by the
    (module, name) a pickle stores. Taken from numpy's __reduce__ rather than imported by name,
    so they are right for numpy 1 (numpy.core) and 2 (numpy._core) alike."""
    array = np.zeros(1, dtype=np.uint8)
    builders = [array.__reduce__()[0], array.__reduce_ex__(5)[0], np.float64(0).__reduce__()[0],
                np.ndarray, np.dtype]
    allowed = {}
    for fn in builders:
        module = fn.__module__ or "numpy"
        for alias in {module, module.replace("numpy._core", "numpy.core"),
                      module.replace("numpy.core", "numpy._core")}:
            allowed[(alias, fn.__name__)] = fn
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(text, "latin1").
    import _codecs
    allowed[("_codecs", "encode")] = _codecs.encode
    return allowed


class _DataOnlyUnpickler(pickle.Unpickler):
    """Builds dicts, lists, tuples, str, bytes, numbers and numpy arrays, dtypes and scalars;
    any other global a pickle names (os.system, builtins.eval, a class with a __reduce__) is
    refused before it is looked up, so loading can never run code from the file."""
    ALLOWED = _pickled_array_builders()

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: a CIFAR batch holds only plain data and numpy "
                f"arrays") from None


def read_cifar_pickle(path: str) -> dict:
    """A CIFAR python batch file (data_batch_1, test_batch, batches.meta, train, meta, ...) as a
    dict with str keys. The official files were pickled by Python 2 (bytes keys, latin-1 text);
    re-encodings are often Python 3's. Never runs code from the file (_DataOnlyUnpickler)."""
    with open_regular(path) as f:
        batch = _DataOnlyUnpickler(f, encoding="bytes").load()
    if not isinstance(batch, dict):
        raise FormatError(f"expected a dict, found {type(batch).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """An IDX file (http://yann.lecun.com/exdb/mnist/) as a numpy array: 2 zero bytes, a type
    byte, a dimension count, big-endian uint32 sizes, then the values in C order. The header is
    read and checked first, then exactly the bytes it declares (and one more, to tell a longer
    file): a gzipped file is never expanded past what its header promises."""
    with open_regular(path) as raw:
        if path.endswith(".gz"):
            f, size = gzip.GzipFile(fileobj=raw, mode="rb"), None
        else:
            f, size = raw, os.fstat(raw.fileno()).st_size
        try:
            return _read_idx_stream(f, path, size)
        except zlib.error as e:
            raise FormatError(f"{path}: its gzip stream is corrupt ({e})") from e


def _read_idx_stream(f, path: str, size: Optional[int]) -> np.ndarray:
    """The IDX array of stream ``f`` (of ``size`` bytes where known: a plain file's is, and a
    header promising more than the file holds is refused before the read would ask for it)."""
    magic = f.read(4)
    if len(magic) < 4 or magic[0] or magic[1] or magic[2] not in IDX_TYPES:
        raise FormatError(f"{path} is not an IDX file")
    ndim, dtype = magic[3], np.dtype(IDX_TYPES[magic[2]])
    if ndim == 0:
        raise FormatError(f"{path}: its IDX header declares no dimensions")
    sizes = f.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise FormatError(f"{path}: its IDX header declares {ndim} dimensions, more sizes than "
                          f"its {4 + len(sizes)} bytes hold")
    shape = struct.unpack(f">{ndim}I", sizes)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    held = None if size is None else size - 4 - 4 * ndim
    data = f.read(expected + 1) if held in (None, expected) else b""
    if held is None:  # a gzip stream: its length is known once read, up to one byte past
        held = len(data)
    if held != expected:
        said = f"{held:,}" if held < expected or size is not None else f"more than {expected:,}"
        raise FormatError(f"{path}: its IDX header says {' x '.join(map(str, shape))} values of "
                          f"{dtype.itemsize} bytes ({expected:,} bytes), the file holds "
                          f"{said} after the header")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


# MATLAB 5 data types (MAT-File Format, table 1-1) and their numpy equivalents.
MAT_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8",
             12: "i8", 13: "u8"}
MI_MATRIX, MI_COMPRESSED = 14, 15


def _elements(buf, order):
    """(type, payload) of each data element of ``buf``, each padded to 8 bytes (small elements,
    with the size in the tag's upper half, to 4 more)."""
    pos = 0
    while pos + 8 <= len(buf):
        tag, = struct.unpack(order + "I", buf[pos:pos + 4])
        if tag >> 16:  # small data element: 2 bytes size, 2 bytes type, 4 bytes data
            size, kind = tag >> 16, tag & 0xFFFF
            yield kind, buf[pos + 4:pos + 4 + size]
            pos += 8
            continue
        kind, size = struct.unpack(order + "II", buf[pos:pos + 8])
        yield kind, buf[pos + 8:pos + 8 + size]
        pos += 8 + size + (-size % 8 if kind != MI_COMPRESSED else 0)


def _matrix(payload, order):
    parts = list(_elements(payload, order))
    if len(parts) < 4:
        raise FormatError("a MATLAB array with fewer than 4 parts")
    dims = np.frombuffer(parts[1][1], dtype=order + MAT_TYPES[parts[1][0]])
    name = parts[2][1].decode("ascii")
    kind, data = parts[3]
    if kind not in MAT_TYPES:
        raise FormatError(f"array {name!r}: unsupported MATLAB data type {kind}")
    values = np.frombuffer(data, dtype=order + MAT_TYPES[kind])
    # MATLAB stores arrays column-major; copy: frombuffer's view is read-only.
    return name, values.reshape(tuple(int(d) for d in dims), order="F").copy()


def read_mat(path: str) -> dict[str, np.ndarray]:
    """The numeric arrays of a MATLAB 5 (.mat v5-v7, not v7.3/HDF5) file, by name."""
    with open_regular(path) as f:
        data = f.read()
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        raise FormatError(f"{path} is not a MATLAB 5 .mat file")
    order = "<" if data[126:128] == b"IM" else ">"
    arrays = {}
    pending = [data[128:]]
    while pending:
        for kind, payload in _elements(pending.pop(), order):
            if kind == MI_COMPRESSED:
                pending.append(zlib.decompress(payload))
            elif kind == MI_MATRIX:
                name, values = _matrix(payload, order)
                arrays[name] = values
    return arrays
