"""An exported program (export.py's .pt2) read without running any code it carries.

``torch.export.load`` unpickles in several places: a weight or constant whose entry in the
archive's config says ``use_pickle`` (``torch.load(weights_only=False)``), custom and opaque
objects among the constants (the TorchScript unpickler, and ``pickle.loads``), and, when the
sample inputs do not load weights-only, a retry with ``weights_only=False``. Exports are shared
as checkpoints are, so a tampered archive could run anything. ``load_exported`` first reads the
archive's own configs (JSON) and refuses any entry that would be unpickled, then loads with
every ``torch.load`` inside forced weights-only (torch's ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``), so
the retry cannot run code either. export.py's programs have none of these: every weight is raw
bytes with its shape in JSON."""
import contextlib
import json
import os
import pickle
import zipfile
from typing import Iterator

import torch
from torch.export.pt2_archive.constants import (CUSTOM_OBJ_FILENAME_PREFIX,
                                                 OPAQUE_OBJ_FILENAME_PREFIX)

from ..files import NotRegularFile, is_export_archive, open_regular
from ..train.checkpoint import CheckpointError

__all__ = ["UnsafeExport", "load_exported"]

MAX_CONFIG_BYTES = 64 * 2 ** 20  # a config lists entries; export.py's are kilobytes


class UnsafeExport(CheckpointError):
    """An archive that asks for unpickling, which could run code."""


def _configs(archive: zipfile.ZipFile) -> Iterator[tuple]:
    """(member name, parsed JSON) of every weights and constants config in ``archive``."""
    for info in archive.infolist():
        parts = info.filename.split("/")
        if (len(parts) >= 3 and parts[-3:-1] in (["data", "weights"], ["data", "constants"])
                and parts[-1].endswith("_config.json")):
            if info.file_size > MAX_CONFIG_BYTES:
                raise CheckpointError(f"{info.filename}: {info.file_size:,} bytes, more than a "
                                      f"config of an exported program holds")
            yield info.filename, json.loads(archive.read(info))


def check_archive(path: str) -> None:
    """Refuse a .pt2 archive whose weights or constants would be unpickled (UnsafeExport), or
    that is not a zip archive at all (CheckpointError)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name, config in _configs(archive):
                entries = config.get("config", {}) if isinstance(config, dict) else {}
                for key, entry in (entries.items() if isinstance(entries, dict) else ()):
                    entry = entry if isinstance(entry, dict) else {}
                    pickled = bool(entry.get("use_pickle"))
                    kind = str(entry.get("path_name", ""))
                    if pickled or kind.startswith((CUSTOM_OBJ_FILENAME_PREFIX,
                                                   OPAQUE_OBJ_FILENAME_PREFIX)):
                        raise UnsafeExport(
                            f"{path}: its {os.path.basename(os.path.dirname(name))} entry "
                            f"{key!r} is a pickle, which could run code when read; export.py "
                            f"writes none, so this file was made or changed elsewhere: refused")
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not a program export.py wrote: {e}") from e


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    saved = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = saved


def load_exported(path: str, extra_files: dict) -> torch.export.ExportedProgram:
    """``torch.export.load(path, extra_files=...)`` with no unpickling that could run code:
    the archive checked first (``check_archive``), every load inside weights-only. A file that
    asks for more is refused with one line."""
    try:  # a FIFO or device would block or never end the reads below
        open_regular(path).close()
    except NotRegularFile as e:
        raise CheckpointError(str(e)) from e
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from e
    if not is_export_archive(path):  # torch.export.load would log its own miniz complaints
        what = ("a torch.save file (a checkpoint or state_dict: give a run's checkpoint to "
                "--resume)" if zipfile.is_zipfile(path) else "not a .pt2 archive")
        raise CheckpointError(f"{path} is not a program export.py wrote: it is {what}")
    check_archive(path)
    with _weights_only_loads():
        try:
            return torch.export.load(path, extra_files=extra_files)
        except pickle.UnpicklingError as e:  # what a forced weights-only load raises
            raise UnsafeExport(f"{path}: part of it is a pickle that does not load as plain "
                               f"tensors (it could run code): refused") from e
        except Exception as e:  # torch's loader raises many kinds on a damaged archive
            raise CheckpointError(f"{path} is not a program export.py wrote: "
                                  f"{type(e).__name__}: {e}") from e
