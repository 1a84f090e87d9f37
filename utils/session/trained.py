"""A trained run, rebuilt from its checkpoint alone for inference (export.py, predict.py): the
network its recorded flags describe, with its weights or their EMA, and the input it expects
(``InputContract``: size, evaluation resize, filter, normalisation, class names)."""
import dataclasses
from typing import NamedTuple, Optional

import torch.nn as nn

from models import model_options

from ..scripts import script_flags_for
from ..data.datasets import CIFAR_MEAN, CIFAR_STD
from ..train.checkpoint import Checkpoint, CheckpointError, load_weights, read_checkpoint
from .build import build_model
from .stages import resumed_of

__all__ = ["InputContract", "TrainedRun", "load_trained", "trained_from"]


@dataclasses.dataclass(frozen=True)
class InputContract:
    """What a trained model takes: RGB images, resized so the shorter side is ``resize`` and
    centre-cropped to ``size`` x ``size`` (cifar.py's models: the whole image resized to 32 x
    32, ``resize`` None), with the antialiased ``interpolation`` filter, as float32 (x / 255 -
    mean) / std per channel, NCHW; output logits in the order of ``classes`` (None: unknown,
    a checkpoint from before class names were recorded)."""
    size: int
    resize: Optional[int]
    interpolation: str
    mean: tuple
    std: tuple
    classes: Optional[list]

    def as_metadata(self) -> dict:
        """The JSON an export carries (export.py's metadata.json)."""
        return {"input": [3, self.size, self.size], "resize": self.resize,
                "interpolation": self.interpolation, "mean": list(self.mean),
                "std": list(self.std), "classes": self.classes}


class TrainedRun(NamedTuple):
    """A run's model in eval mode, its architecture, class count and constructor options (the
    keywords that rebuild it: depth, gn_groups, ...), its InputContract, and the Checkpoint it
    was rebuilt from (its recorded flags and run record)."""
    model: nn.Module
    arch: str
    num_classes: int
    contract: InputContract
    options: dict
    checkpoint: Optional[Checkpoint] = None


def load_trained(path: str, use_ema: bool = False) -> TrainedRun:
    """The TrainedRun of a run folder or checkpoint file (or a safetensors export of one): the
    weights, or with ``use_ema`` their EMA's."""
    return trained_from(read_checkpoint(path), path, use_ema)


def trained_from(checkpoint: Checkpoint, path: str, use_ema: bool = False) -> TrainedRun:
    """The TrainedRun of a ``checkpoint`` already read from ``path`` (load_trained's)."""
    arch = checkpoint.arch or (checkpoint.args or {}).get("arch")
    if arch is None or checkpoint.num_classes is None:
        raise CheckpointError(f"{path} records no architecture and class count (a checkpoint of "
                              f"this project is needed to rebuild its model)")
    resumed = resumed_of(path, checkpoint)
    flags = script_flags_for(arch, resumed.script)
    settings = flags.model_settings([], resumed)
    model = build_model(flags.archs, settings, checkpoint.num_classes)
    if use_ema:
        saved = checkpoint.ema_state_dict
        if not saved:
            raise CheckpointError(f"{path} keeps no EMA of the weights (trained without --ema)")
        # AveragedModel's state: the averaged module's under "module.", and its step count.
        load_weights(model, {k[len("module."):]: v for k, v in saved.items()
                             if k.startswith("module.")})
    else:
        load_weights(model, checkpoint)
    if "val_crop_size" in flags.flags:  # imagenet.py: its recorded views
        views = flags.image_views(resumed)
        contract = InputContract(views.val_crop, views.val_resize, views.interpolation,
                                 tuple(views.mean), tuple(views.std), checkpoint.classes)
    else:
        normalisation = _cifar_normalisation(checkpoint, path)
        contract = InputContract(flags.spec.image_size, None, "bilinear",
                                 tuple(normalisation["mean"]), tuple(normalisation["std"]),
                                 checkpoint.classes)
    options = {name: value for name, value in settings.options.items()
               if name in model_options(flags.archs[arch])}
    return TrainedRun(model.eval(), arch, checkpoint.num_classes, contract, options, checkpoint)


def _cifar_normalisation(checkpoint: Checkpoint, path: str) -> dict:
    if checkpoint.normalisation is not None:
        return checkpoint.normalisation
    dataset = (checkpoint.args or {}).get("dataset", "cifar10")
    if dataset in ("cifar10", "cifar100"):  # their fixed statistics (dataset_stats)
        return {"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)}
    raise CheckpointError(f"{path} records no normalisation, and -d {dataset} normalises with "
                          f"its training images' statistics: retrain, or evaluate with cifar.py "
                          f"-e on the data")

