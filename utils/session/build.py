"""The network a run trains, built once from its ModelSettings: the architecture with its
options and (conv, norm) pair, then micro-batches (--ghost-batch) and synchronised BatchNorm
(--sync-bn). ``build_model`` applies the whole model choice, so training, bench.py and
export.py see the same network, and a flag that cannot act on it is refused, never dropped.
``prepare_model`` then readies it for the device (memory format, DDP/DataParallel, compile).
"""
import os
import sys
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torchvision

from models import create_model
from models.imagenet.torchvision_models import (torchvision_options, with_pair,
                                               zero_residual_ends)
from models.norms import use_micro_batches
from models.twins import PAIR_NAMES

from .. import distributed
from ..messages import first_line
from ..settings.flag import UsageError
from ..settings.values import DeviceSettings, ModelSettings
from ..train.checkpoint import CheckpointError, WeightsMismatch
from ..train.fine_tune import InitialWeights, initialise_from
from ..train.plan import PreparedModel

__all__ = ["MAX_DEPTH", "build_model", "pretrained_model", "check_fits", "load_initial_weights",
           "prepare_model", "Pretrained"]

# No published network is deeper than ResNet-1202; building one costs ~1 ms per layer even on
# the meta device, so the estimate below would itself take minutes far past this.
MAX_DEPTH = 10_000


def build_model(registry: dict, settings: ModelSettings, num_classes: int,
                device: Optional[torch.device] = None) -> nn.Module:
    """The network of a ModelSettings (whose flags parsing checked against the architecture),
    built with the options its constructor takes, with its micro-batches and synchronised
    BatchNorm; an impossible configuration (a depth of the wrong form, widths GroupNorm cannot
    split, a flag with nothing to act on) is a UsageError. ``device``: where it will train; a
    network whose training state would not fit in its memory is refused before it is built.
    Without a device the network is for inference (export.py), where SyncBatchNorm is
    BatchNorm: it is left as BatchNorm there."""
    if settings.sync_bn and device is not None and (device.type != "cuda"
                                                  or not distributed.initialized()):
        raise UsageError("--sync-bn needs CUDA GPUs under torchrun: torch's SyncBatchNorm "
                         "synchronises BatchNorm over the processes of a GPU process group")
    depth = settings.options.get("depth")
    if "depth" in settings.given and depth > MAX_DEPTH:
        raise UsageError(f"--depth {depth}: this project builds at most {MAX_DEPTH} layers (the "
                         f"deepest published CIFAR network, ResNet-1202, has 1202)")
    try:
        if device is not None:
            _check_estimate(registry, settings, num_classes, device)
        network = create_model(registry, settings.arch, num_classes=num_classes, **settings.options)
    except ValueError as e:
        message = str(e)
        raise UsageError(message if message.startswith(settings.arch) else
                         f"{settings.arch}: {message}") from e
    return with_batch_options(network, settings, sync=device is not None)


def _check_estimate(registry: dict, settings: ModelSettings, num_classes: int,
                    device: torch.device) -> None:
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            estimate = create_model(registry, settings.arch, num_classes=num_classes,
                                    **settings.options)
    except (NotImplementedError, RuntimeError):
        return  # an initialisation that reads values (torchvision's RegNets)
    check_fits(estimate, settings.arch, device)


def with_batch_options(network: nn.Module, settings: ModelSettings, sync: bool = True) -> nn.Module:
    """``network`` with --ghost-batch (micro-batch BatchNorm / BCN, in place) and, when
    ``sync``, --sync-bn (SyncBatchNorm) applied; refused where it has nothing to act on."""
    if settings.ghost_batch and use_micro_batches(network, settings.ghost_batch) == 0:
        raise UsageError(f"--ghost-batch needs batch statistics; {settings.arch} has no "
                         f"BatchNorm2d or BatchChannelNorm2d layer")
    if settings.sync_bn:
        if not any(isinstance(m, nn.BatchNorm2d) for m in network.modules()):
            raise UsageError("--sync-bn changes BatchNorm layers; this model has none")
        if sync:
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
    return network


class Pretrained(NamedTuple):
    """A network with torchvision's weights, and what they were (for the line and run.json)."""
    network: nn.Module
    weights: InitialWeights


def pretrained_model(registry: dict, settings: ModelSettings, num_classes: int) -> Pretrained:
    """torchvision's ``settings.arch`` with its ImageNet weights (--pretrained): all of them for
    1000 classes, all but the classifier (freshly initialised) for another count; then the pair
    (a norm other than bn replaces the BatchNorm layers with fresh ones, which the line says)
    and the batch options of ``settings``."""
    arch = settings.arch
    if arch not in registry or not getattr(registry[arch], "torchvision", False):
        raise UsageError(f"--pretrained takes torchvision weights; {arch} has none there: use "
                         f"--weights PATH")
    try:
        trained = torchvision.models.get_model(arch, weights="DEFAULT",
                                               **torchvision_options(arch))
    except Exception as e:
        raise CheckpointError(f"could not get torchvision's pretrained weights for {arch} "
                              f"(offline?): {first_line(e)}") from e
    network = torchvision.models.get_model(arch, num_classes=num_classes,
                                           **torchvision_options(arch))
    loaded = initialise_from(network, trained.state_dict(), num_classes,
                       name=f"torchvision's ImageNet weights of {arch}")
    pair = {k: v for k, v in settings.options.items() if k in PAIR_NAMES}
    norms = sum(type(m) is nn.BatchNorm2d for m in network.modules())
    try:
        network = with_pair(network, arch, **pair)
    except ValueError as e:  # the converter's errors name the model
        raise UsageError(str(e)) from e
    if pair.get("norm", "bn") != "bn":
        loaded = loaded._replace(fresh=loaded.fresh + (
            f"its {norms} BatchNorm layers, now --norm {pair['norm']} layers",))
    if settings.options.get("zero_init_residual"):
        if pair.get("norm", "bn") == "bn":
            raise UsageError("--zero-init-residual with --pretrained would zero trained norm "
                             "weights; it applies to the fresh norms of another --norm")
        zero_residual_ends(network)
    return Pretrained(with_batch_options(network, settings), loaded)


def check_fits(model: nn.Module, arch: str, device: torch.device) -> None:
    """Refuse a model whose weights, gradients and momentum alone (4 bytes each per parameter,
    and as much again for an EMA or Adam's second moment) exceed the device's memory."""
    params = sum(p.numel() for p in model.parameters())
    need = params * 4 * 4
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
    else:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise UsageError(f"{arch} with these flags has {params / 1e6:,.0f}M parameters: training "
                         f"needs at least {need / 2 ** 30:,.0f} GiB for weights, gradients and "
                         f"optimizer state, more than the {have / 2 ** 30:,.0f} GiB of {device}")


def load_initial_weights(model: nn.Module, weights: str, num_classes: int,
                         evaluate: bool = False) -> Optional[InitialWeights]:
    """--weights PATH into the built ``model``, before the data is read: weights that do not fit
    are refused without waiting for it; a classifier of another class count is left fresh
    (fine-tuning: utils.train.fine_tune), and a line says so, except to ``evaluate`` (-e),
    whose score would be a fresh classifier's: refused; weights of another network are a
    UsageError naming the keys that do not fit. None without --weights."""
    if not weights:
        return None
    try:
        loaded = initialise_from(model, weights, num_classes)
    except WeightsMismatch as e:  # -a and --weights disagree: the command line is wrong
        raise UsageError(f"--weights {weights}: {e}") from e
    if evaluate and loaded.fresh:
        raise UsageError(f"-e --weights {weights}: its model has {loaded.from_classes} classes "
                         f"and this data {loaded.to_classes}, so the classifier would be fresh "
                         f"and the score meaningless; evaluate on data of its classes, or "
                         f"fine-tune first")
    print(loaded.line())
    return loaded


# Measured on the CPU (BENCHMARKS.md): eager GroupNorm on NHWC activations is slow, while
# torch.compile generates its own normalisation. On CUDA it depends on the torch version
# (older ones copy a channels-last input to NCHW in every GroupNorm), so no warning there.
CHANNELS_LAST_GN_WARNING = (
    "warning: on the CPU --channels-last without --compile slows GroupNorm models (eager "
    "GroupNorm is slow on NHWC; see BENCHMARKS.md): add --compile, or drop --channels-last")


def prepare_model(model: nn.Module, device: torch.device, gpu_count: int,
                  speed: DeviceSettings) -> PreparedModel:
    """Ready the built ``model`` (its --weights loaded already) for the device: moved to
    ``device`` in the memory format of ``speed``, wrapped in DistributedDataParallel under
    torchrun or DataParallel over several --gpu-id GPUs, torch.compile on request."""
    model = model.to(device)
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
        if (device.type == "cpu" and not speed.compile
                and any(isinstance(m, nn.GroupNorm) for m in model.modules())):
            print(CHANNELS_LAST_GN_WARNING, file=sys.stderr)
    raw = model
    if distributed.initialized():
        model = distributed.wrap(model, device)
    elif gpu_count > 1:
        model = nn.DataParallel(model)
    if speed.compile:
        model = torch.compile(model, mode=speed.compile)
    print(f"    Total params: {sum(p.numel() for p in raw.parameters()) / 1e6:.2f}M")
    return PreparedModel(model, raw)
