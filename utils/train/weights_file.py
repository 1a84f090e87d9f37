"""A model's weights shared as safetensors (export.py --format safetensors), read wherever a
model file is read (--weights, -e --weights, predict.py --model, export.py, hubconf.py).

The file (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N,
N bytes of JSON naming each tensor's dtype, shape and byte span in the data that follows, and
``__metadata__``, a map of text to text. Nothing is pickled, so reading one runs no code.

Ours holds the raw weights, keyed as a checkpoint's state_dict: Weight Standardization is not
folded in (export.py's .pt2 and state_dict formats fold it), because a shared GN+WS backbone is
fine-tuned, and fine-tuning needs the weights WSConv2d standardizes in every forward, not their
standardized copy. Its metadata (``format`` FORMAT) says what rebuilds the network as the run
trained it, each a JSON text: ``arch`` and ``script`` (cifar.py, imagenet.py: plain text),
``num_classes``, ``classes`` (names in output order),
``args`` (the recorded flags: every model option, the norm pair, groups, WS form, the input
sizes and normalisation), ``normalisation`` (cifar.py's mean and std), ``run`` (the run
record: the script and commands that trained it, and its result), ``input`` (the input
contract, as export.py's metadata.json gives it) and ``weights`` ("raw", or "ema": the
exponential moving average). Read back, these are a checkpoint's fields and are checked as one.
A safetensors file from elsewhere (timm's, say) reads as a bare state_dict.

The header is checked before any tensor is read: a damaged or tampered one (bad JSON, a span
past the end of the file, a dtype or shape that does not fill its span) is one line.
"""
import json
import math
import os
from typing import Optional

from ..files import open_regular


__all__ = ["FORMAT", "WeightsFileError", "is_weights_file", "read_weights_file",
           "weights_file_bytes"]

FORMAT = "ws-gn-classifier/1"
# The metadata that travel as JSON text, and those that are plain text.
JSON_FIELDS = ("num_classes", "classes", "args", "normalisation", "run", "input")
TEXT_FIELDS = ("arch", "script", "weights")
# safetensors' dtypes and their sizes in bytes.
ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
              "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
MAX_HEADER = 100 * 2 ** 20  # safetensors' own bound on the header


class WeightsFileError(Exception):
    """A safetensors file that cannot be what it says; the message names the file and why."""


def is_weights_file(path: str) -> bool:
    """Whether ``path`` is (or is named as) a safetensors file: its name ends in .safetensors,
    or its ninth byte opens the JSON header. A damaged one is still one, so that its damage is
    reported as a safetensors file's."""
    if str(path).endswith(".safetensors"):
        return True
    try:
        with open_regular(path) as f:  # a FIFO would block the read
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little")


def _header(path: str) -> tuple[dict, dict]:
    """(tensor entries, metadata) of the file's header, every entry checked against the file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightsFileError(f"{path} is not a safetensors file: {size} bytes, fewer than "
                                   f"its 8-byte header length")
        length = int.from_bytes(head, "little")
        if length > min(size - 8, MAX_HEADER):
            raise WeightsFileError(f"{path}: its header says {length:,} bytes, past the end of "
                                   f"the file ({size:,} bytes): truncated or damaged")
        try:
            header = json.loads(f.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise WeightsFileError(f"{path}: its header is not JSON ({e})") from e
        except RecursionError:
            raise WeightsFileError(f"{path}: its header nests deeper than a header does: "
                                   f"damaged or tampered") from None
    if not isinstance(header, dict):
        raise WeightsFileError(f"{path}: its header is a JSON {type(header).__name__}, not an "
                               f"object of tensors")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise WeightsFileError(f"{path}: its __metadata__ is not a map of text to text")
    data = size - 8 - length
    for name, entry in header.items():
        problem = _entry_problem(entry, data)
        if problem:
            raise WeightsFileError(f"{path}: tensor {name!r} {problem}: damaged or tampered")
    return header, metadata


def _entry_problem(entry: object, data: int) -> Optional[str]:
    """What is wrong with a header entry, in a file of ``data`` bytes of tensors, or None."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        return "is not an entry of dtype, shape and data_offsets"
    dtype, shape, span = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in ITEM_BYTES:
        return f"has dtype {dtype!r}, which safetensors does not have"
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool)
                                              and n >= 0 for n in shape):
        return f"has shape {shape!r}, not a list of sizes"
    if not (isinstance(span, list) and len(span) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) for n in span)
            and 0 <= span[0] <= span[1] <= data):
        return f"lies at bytes {span!r}, outside the file's {data:,} bytes of tensors"
    if span[1] - span[0] != math.prod(shape) * ITEM_BYTES[dtype]:
        return (f"is {dtype} of shape {shape}, {math.prod(shape) * ITEM_BYTES[dtype]:,} bytes, "
                f"but spans {span[1] - span[0]:,}")
    return None


def read_weights_file(path: str) -> dict:
    """The dict a checkpoint file holds, of a safetensors file: {"state_dict": tensors, and the
    checkpoint fields its metadata gives}; a bare state_dict for a file of another project. The
    header is checked first (WeightsFileError); nothing is unpickled."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    _, metadata = _header(path)
    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise WeightsFileError(f"{path} is not a readable safetensors file: {e}") from e
    if metadata.get("format") != FORMAT:
        return tensors
    saved = {"state_dict": tensors}
    if "arch" in metadata:
        saved["arch"] = metadata["arch"]
    if "run" not in metadata and metadata.get("script"):  # the script that rebuilds it
        saved["run"] = {"sessions": [{"command": [metadata["script"]]}]}
    for field in JSON_FIELDS:
        if field in metadata:
            try:
                saved[field] = json.loads(metadata[field])
            except json.JSONDecodeError as e:
                raise WeightsFileError(f"{path}: its metadata {field!r} is not JSON ({e})") from e
            except RecursionError:
                raise WeightsFileError(f"{path}: its metadata {field!r} nests deeper than a "
                                       f"run writes: damaged or tampered") from None
    return saved


def weights_file_bytes(state_dict: dict, fields: dict, weights: str) -> bytes:
    """The safetensors file of ``state_dict`` (tensors, copied to contiguous CPU memory) with
    ``fields`` (a checkpoint's: arch, num_classes, classes, args, normalisation, run, input) in
    its metadata, and ``weights`` ("raw" or "ema") saying which weights they are."""
    from safetensors.torch import save
    metadata = {"format": FORMAT, "weights": weights}
    for name, value in fields.items():
        if value is not None:
            metadata[name] = value if name in TEXT_FIELDS else json.dumps(value)
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in
               state_dict.items()}
    return save(tensors, metadata=metadata)
