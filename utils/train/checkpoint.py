"""Checkpoints: the typed ``Checkpoint``, saving it (atomically: utils.atomic), reading one (ours
or the reference's) and loading weights strictly.

On disk a checkpoint is the reference's dict: ``epoch`` (epochs done), ``state_dict`` (the
reference's carries DataParallel's ``module.`` prefix; ours is unwrapped), ``acc``, ``best_acc``,
``optimizer``. Ours adds what an exact resume and a rebuilt model need: ``scheduler``,
``scaler``, ``rng``, ``arch``, ``num_classes``, ``classes`` (the class names, in label order;
checkpoints from before they were recorded have none), ``normalisation`` (the per-channel
mean and std its batches were normalised with), ``args`` (the run's recorded flags),
``ema_state_dict``, ``log`` (the log's rows), ``run`` (its run record) and, for a recovery
checkpoint taken mid-epoch, ``position``. ``FIELDS`` is that schema
(utils.train.checkpoint_schema); every field read back is checked against it (and
``FIELD_CHECKS``) before use. A file holding a bare state_dict is a
checkpoint of weights alone, and so is a safetensors file (utils.train.weights_file), whose
metadata give the fields that rebuild its model.
"""
import dataclasses
import errno
import os
import pickle
import re
import shutil
from typing import NamedTuple, Optional, Union

import torch
import torch.nn as nn

from ..files import is_export_archive
from ..atomic import atomic_copy, atomic_save
from ..messages import first_line
from ..records.run_folder import holds_run, stopped_before_first_checkpoint
from ..seeding import rng_state, set_rng_state
from .checkpoint_schema import CheckpointError, as_number, check_checkpoint
from .recipe import Recipe
from .state_fit import state_misfit
from .weights_file import WeightsFileError, is_weights_file, read_weights_file

WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile


class WeightsMismatch(CheckpointError):
    """Weights whose keys or shapes are not the model's (``load_weights``)."""


EPOCH_COPY = re.compile(r"checkpoint_epoch_(\d+)\.pth\.tar$")


def save_checkpoint(checkpoint: "Checkpoint", is_best: bool, folder: str,
                    filename: str = "checkpoint.pth.tar", keep: int = 0) -> str:
    """Save ``checkpoint`` as folder/filename and, when ``is_best``, as folder/model_best.pth.tar.
    With ``keep`` N > 0 also as checkpoint_epoch_E.pth.tar (E = its epoch), and the copies of
    epochs before the last N are removed. Returns the path written."""
    path = os.path.join(folder, filename)
    try:
        atomic_save(checkpoint.to_dict(), path)
        if is_best:
            atomic_copy(path, os.path.join(folder, "model_best.pth.tar"))
        if keep:
            epoch = checkpoint.epoch
            atomic_copy(path, os.path.join(folder, f"checkpoint_epoch_{epoch}.pth.tar"))
            for name in os.listdir(folder):
                match = EPOCH_COPY.match(name)
                if match and int(match.group(1)) <= epoch - keep:
                    os.remove(os.path.join(folder, name))
    except (OSError, RuntimeError) as e:
        # torch.save reports a failed write (a full disk) as a RuntimeError without an errno.
        reason = getattr(e, "strerror", None) or (
            os.strerror(errno.ENOSPC) if _nearly_full(folder) else first_line(e))
        raise CheckpointError(f"could not write a checkpoint in {folder}: {reason}; "
                              f"the previous checkpoint there is intact") from e
    return path


def _nearly_full(folder: str, margin: int = 64 * 2 ** 20) -> bool:
    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


def resolve_checkpoint_path(path: str) -> str:
    """A checkpoint file, or a run folder holding checkpoint.pth.tar."""
    folder = path if os.path.isdir(path) else None
    if folder is not None:
        path = os.path.join(folder, "checkpoint.pth.tar")
    if not os.path.isfile(path):
        files = holds_run(folder) if folder is not None else []
        if files and stopped_before_first_checkpoint(folder, files):
            raise CheckpointError(f"{folder} holds a run stopped before its first checkpoint: "
                                  f"there is nothing to resume; run its command again without "
                                  f"--resume to start it over")
        raise CheckpointError(f"no checkpoint found at {path}")
    return path


def read_checkpoint(path: str) -> "Checkpoint":
    """The Checkpoint of a file (or a run folder's checkpoint.pth.tar), loaded onto the CPU
    (tensors, numbers, strings and containers only) and checked (check_checkpoint)."""
    path = resolve_checkpoint_path(path)
    if is_export_archive(path):
        raise CheckpointError(f"{path} is an exported program (export.py's .pt2), which holds "
                              f"WS folded into plain convs and no training state: give the run "
                              f"folder or its checkpoint.pth.tar (predict.py --model reads the "
                              f".pt2)")
    if is_weights_file(path):  # safetensors: no pickle at all (utils.train.weights_file)
        try:
            return Checkpoint.from_dict(read_weights_file(path), path)
        except WeightsFileError as e:
            raise CheckpointError(str(e)) from e
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message advises weights_only=False, which would run what the file names:
        # never repeated. A global it refused is named; otherwise its unpickler's reason.
        text = str(e)
        named = re.search(r"GLOBAL (\S+)", text)
        if named:
            raise CheckpointError(f"checkpoint {path} names {named.group(1)}, which no "
                                  f"checkpoint holds (code, or an object of another program): "
                                  f"refused without running it; a checkpoint holds only "
                                  f"tensors, numbers, text and containers") from e
        reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated, corrupt or not a "
                              f"PyTorch file): UnpicklingError: "
                              f"{reason.group(1) if reason else 'not a pickle torch reads'}"
                              ) from e
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated, corrupt or not a "
                              f"PyTorch file): {type(e).__name__}: {first_line(e)}") from e
    return Checkpoint.from_dict(saved, path)


def unwrap_state_dict(obj: Union["Checkpoint", dict]) -> dict:
    """The weights of a checkpoint (a bare state_dict, or a dict holding one under
    ``state_dict``, or a Checkpoint), without the ``module.`` prefix DataParallel adds or
    torch.compile's ``_orig_mod.``."""
    if isinstance(obj, Checkpoint):
        obj = obj.state_dict
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise CheckpointError(f"expected a state_dict, found {type(state).__name__}")
    out = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        out[key] = value
    return out


def load_weights(model: nn.Module, source: Union[str, os.PathLike, "Checkpoint", dict]
                 ) -> Union["Checkpoint", dict]:
    """Load weights into ``model`` (unwrapped) from a checkpoint path, a Checkpoint or a
    state_dict (or a dict holding one), strictly:
    any missing key, unexpected key or shape mismatch raises CheckpointError naming them."""
    checkpoint = read_checkpoint(source) if isinstance(source, (str, os.PathLike)) else source
    state = unwrap_state_dict(checkpoint)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    # A float tensor may be stored in another float width; an integer or a bool as a float (or
    # the other way) is not the model's tensor, and load_state_dict would cast it silently.
    kinds = [f"{k}: checkpoint {state[k].dtype} vs model {own[k].dtype}" for k in own
             if k in state and _kind(state[k]) != _kind(own[k])]
    if missing or unexpected or shapes or kinds:
        problems = []
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", shapes), ("dtype mismatches", kinds)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8
                                                else "")
                problems.append(f"{title}: {shown}")
        raise WeightsMismatch("checkpoint does not fit the model; " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return checkpoint


def _kind(tensor: torch.Tensor) -> str:
    return ("float" if tensor.is_floating_point() else "complex" if tensor.is_complex()
            else "bool" if tensor.dtype == torch.bool else "integer")


# What a Checkpoint captures of a run beside its weights and training state: the fields the
# caller names (utils.session.stages.checkpoint_fields and the engine's log rows and position).
ABOUT_THE_RUN = ("arch", "num_classes", "classes", "normalisation", "args", "log", "run",
                 "position")
# Written even when empty (None), as every checkpoint of this project always has been.
ALWAYS_WRITTEN = ("epoch", "state_dict", "acc", "best_acc", "optimizer", "scheduler", "scaler",
                  "rng")


class Restored(NamedTuple):
    """Where a restored checkpoint left off: the epochs it had done, and its best accuracy."""
    epoch: int
    best_acc: float


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint's fields, typed (``FIELDS`` is their on-disk schema, the module docstring
    says what each holds). None is a field the checkpoint does not have: the reference's have
    only epoch, state_dict, acc, best_acc and optimizer; a bare state_dict only its weights.
    Fields this project does not know are kept in ``extra``, so they survive a round trip."""
    epoch: int = 0
    state_dict: dict = dataclasses.field(default_factory=dict)
    acc: Optional[float] = None
    best_acc: Optional[float] = None
    optimizer: Optional[dict] = None
    scheduler: Optional[dict] = None
    scaler: Optional[dict] = None
    rng: Optional[dict] = None
    arch: Optional[str] = None
    num_classes: Optional[int] = None
    classes: Optional[list] = None
    normalisation: Optional[dict] = None
    args: Optional[dict] = None
    ema_state_dict: Optional[dict] = None
    log: Optional[dict] = None
    run: Optional[dict] = None
    position: Optional[dict] = None
    extra: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, saved: object, path: str = "the checkpoint") -> "Checkpoint":
        """The Checkpoint of a loaded file's object, checked field by field first
        (check_checkpoint; ``path`` names it in the error). Accuracies saved as 0-dim tensors
        (the reference's) become floats."""
        check_checkpoint(saved, path)
        if "state_dict" not in saved:  # a bare state_dict
            return cls(state_dict=saved)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        fields = {k: v for k, v in saved.items() if k in known}
        for name in ("acc", "best_acc"):
            if fields.get(name) is not None:
                fields[name] = float(as_number(fields[name]))
        return cls(**fields, extra={k: v for k, v in saved.items() if k not in known})

    def to_dict(self) -> dict:
        """The dict torch.save writes: the reference's keys first, then ours; a field that is
        None is left out unless every checkpoint of this project has written it."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name != "extra" and (value is not None or field.name in ALWAYS_WRITTEN):
                out[field.name] = value
        return {**out, **self.extra}

    @classmethod
    def capture(cls, epochs_done: int, model: nn.Module, recipe: Recipe, acc: float,
                best_acc: float, about: dict) -> "Checkpoint":
        """The checkpoint of a run after ``epochs_done`` epochs: ``model``'s weights (the bare
        module), the optimizer, schedule, AMP scaler and EMA of ``recipe`` (a Recipe), the RNG
        states, the accuracies, and ``about`` the run (ABOUT_THE_RUN's fields)."""
        stray = set(about) - set(ABOUT_THE_RUN)
        if stray:
            raise ValueError(f"a checkpoint records no {sorted(stray)}")
        return cls(state_dict=model.state_dict(), epoch=epochs_done, acc=float(acc),
                   best_acc=float(best_acc), optimizer=recipe.optimizer.state_dict(),
                   scheduler=recipe.scheduler.state_dict(),
                   scaler=recipe.scaler.state_dict() if recipe.scaler is not None else None,
                   rng=rng_state(),
                   ema_state_dict=recipe.ema.state_dict() if recipe.ema is not None else None,
                   **about)

    def restore(self, model: nn.Module, recipe: Recipe) -> "Restored":
        """Put the weights into ``model`` (strictly: load_weights) and the optimizer, schedule,
        AMP scaler, EMA and RNG states into ``recipe``'s parts and this process. Reference
        checkpoints carry no schedule: the schedule is then advanced to their epoch."""
        load_weights(model, self)
        ema, scaler = recipe.ema, recipe.scaler
        parts = [("optimizer", recipe.optimizer.load_state_dict, self.optimizer),
                 ("schedule", recipe.scheduler.load_state_dict, self.scheduler),
                 ("EMA", ema.load_state_dict if ema is not None else None, self.ema_state_dict),
                 ("AMP scaler", scaler.load_state_dict if scaler is not None else None,
                  self.scaler),
                 ("random generator", set_rng_state, self.rng)]
        fresh = {"optimizer": recipe.optimizer, "schedule": recipe.scheduler, "AMP scaler": scaler}
        for name, load, state in parts:
            if load is None or not state:
                continue
            problem = state_misfit(state, fresh[name].state_dict()) if name in fresh else None
            if problem:
                raise CheckpointError(f"the checkpoint's {name} state does not fit this run: "
                                      f"{problem}")
            try:
                load(state)
            except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
                raise CheckpointError(f"the checkpoint's {name} state does not fit this run: "
                                      f"{type(e).__name__}: {first_line(e)}") from e
        if not self.scheduler:
            recipe.scheduler.last_epoch = self.epoch
        return Restored(self.epoch, self.best_acc or 0.0)
