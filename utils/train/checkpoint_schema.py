"""A checkpoint's schema on disk: the fields it may hold (the reference's and ours) with their
types (``FIELDS``), what each must hold beyond its type (``FIELD_CHECKS``), and
``check_checkpoint``, which every file read back passes before a field is used; and
``CheckpointError``, the one error of a checkpoint that cannot be used."""
import math

import torch

__all__ = ["CheckpointError", "FIELDS", "FIELD_CHECKS", "check_checkpoint", "as_number"]


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


# The fields a checkpoint may hold (the reference's and ours) and the types they must have
# (the reference saved its accuracies as 0-dim tensors).
FIELDS = {"epoch": int, "acc": (int, float, torch.Tensor), "best_acc": (int, float, torch.Tensor),
          "optimizer": dict,
          "scheduler": (dict, type(None)), "scaler": (dict, type(None)), "rng": dict, "arch": str,
          "num_classes": int, "classes": list, "normalisation": dict, "args": dict, "ema_state_dict": dict, "log": dict,
          "run": dict,
          "position": dict}


def check_checkpoint(checkpoint: object, path: str) -> None:
    """A dict holding named tensors (under ``state_dict``, or a bare state_dict) whose other
    fields have their types; anything else is a CheckpointError naming what is wrong."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint")
    state = checkpoint.get("state_dict", checkpoint)
    if (not isinstance(state, dict) or not state
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                       for k, v in state.items())):
        raise CheckpointError(f"{path} is not a checkpoint: it holds no state_dict of named "
                              f"tensors")
    if state is checkpoint:
        return
    for field, types in FIELDS.items():
        if field in checkpoint and (not isinstance(checkpoint[field], types)
                                    or isinstance(checkpoint[field], bool)):
            raise CheckpointError(f"{path} has a malformed {field!r}: a "
                                  f"{type(checkpoint[field]).__name__}")
    if checkpoint.get("epoch", 0) < 0:
        raise CheckpointError(f"{path} has a negative epoch count ({checkpoint['epoch']})")
    for field, check in FIELD_CHECKS.items():
        if checkpoint.get(field) is not None:
            problem = check(checkpoint[field])
            if problem:
                raise CheckpointError(f"{path} has a malformed {field!r}: {problem}")
    names, count = checkpoint.get("classes"), checkpoint.get("num_classes")
    if names is not None and count is not None and len(names) != count:
        raise CheckpointError(f"{path} has a malformed 'classes': {len(names)} names for "
                              f"{count} classes")


def as_number(value: object) -> object:
    """A number saved as an int, a float or a one-element tensor (the reference's), or None."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _finite(value, least=None):
    """Whether ``value`` is a finite number (at least ``least``)."""
    number = as_number(value)
    return number is not None and math.isfinite(number) and (least is None or number >= least)


def _check_log(log):
    names, rows = log.get("names"), log.get("rows")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return "its column names are not a list of names"
    if not isinstance(rows, list):
        return "its rows are not a list"
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, list) or len(row) != len(names):
            return f"row {i} is not a row of {len(names)} numbers"
        if not all(_finite(v) for v in row):
            return f"row {i} holds a value that is not a finite number"
    return None


def _check_position(position):
    batch, meters, lr = position.get("batch"), position.get("meters"), position.get("lr")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        return f"its batch is {batch!r}, not a batch number of 1 or more"
    if not isinstance(meters, list) or not meters or not all(
            isinstance(m, list) and len(m) == 5 and all(_finite(v, 0) for v in m)
            for m in meters):
        return "its meters are not lists of 5 non-negative numbers"
    if not _finite(lr, 0) or as_number(lr) == 0:
        return f"its learning rate is {lr!r}, not a positive number"
    return None


def _check_normalisation(normalisation):
    for name in ("mean", "std"):
        values = normalisation.get(name)
        if (not isinstance(values, list) or len(values) != 3
                or not all(_finite(v) for v in values)):
            return f"its {name} is not 3 finite numbers"
    if not all(v > 0 for v in normalisation["std"]):
        return "its std is not positive"
    return None


def _check_run(run):
    sessions = run.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
        return "its sessions are not a list of records"
    for name in ("flags", "recorded"):
        if not isinstance(run.get(name, {}), dict):
            return f"its {name} are not a dict"
    return None


# What each field must hold beyond its type, said in the words of the error line.
FIELD_CHECKS = {
    "acc": lambda v: None if _finite(v) else f"{v!r} is not a finite number",
    "best_acc": lambda v: None if _finite(v) else f"{v!r} is not a finite number",
    "num_classes": lambda v: None if v >= 1 else f"{v} classes",
    "classes": lambda v: None if all(isinstance(c, str) for c in v) else "not a list of names",
    "normalisation": lambda v: _check_normalisation(v),
    "log": _check_log, "position": _check_position, "run": _check_run}
