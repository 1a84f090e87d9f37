"""``bench.py step``: training-step throughput of a model built as training builds it, beside
the reference style (fp32, NCHW, eager) and the BN twin of an l_* model, as ratios."""
import dataclasses
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn as nn

from utils.scripts import script_flags_for
from utils.session.build import build_model
from utils.settings.values import ModelSettings
from utils.train.recipe import autocast

from .timing import Seconds, Timing, report, time_calls

__all__ = ["ModelBench", "Speed", "model_settings", "model_name", "label", "bn_twin",
           "time_steps", "bench_step"]


class ModelBench(NamedTuple):
    """What a benchmark builds: the script's architectures, the ModelSettings of the model
    flags, and the side of the script's images."""
    archs: dict
    model: ModelSettings
    image_size: int


class Speed(NamedTuple):
    """How a step runs: autocast precision, NHWC, and torch.compile's mode (None: eager)."""
    amp: str = "none"
    channels_last: bool = False
    compile: Optional[str] = None


REFERENCE = Speed()


def model_settings(model_flags: Sequence[str]) -> ModelBench:
    """The ModelBench of model flags as cifar.py or imagenet.py reads them: cifar.py's command
    line for its own architectures, imagenet.py's for the rest."""
    model_flags = list(model_flags)
    arch = model_flags[model_flags.index("-a") + 1] if "-a" in model_flags else "l_resnet50"
    flags = script_flags_for(arch)
    return ModelBench(flags.archs, flags.model_settings(["-a", arch] + model_flags),
                      flags.spec.image_size)


def bn_twin(archs: dict, settings: ModelSettings) -> Optional[ModelSettings]:
    """The same network with BatchNorm and plain convs: l_<name> -> <name> (torchvision's where
    we have none), and --norm / --ws / --ghost-batch dropped; None when ``settings`` is that
    network already. (The pair is set, not dropped: parsing writes an l_* name's own pair,
    gn and ws, into its options.)"""
    twin_name = settings.arch[2:]
    arch = twin_name if settings.arch.startswith("l_") and twin_name in archs else settings.arch
    pair = {"norm": "bn", "ws": False}
    options = {k: v for k, v in settings.options.items() if k not in pair}
    options.update({k: v for k, v in pair.items() if k in settings.options})
    given = settings.given - {"norm", "ws", "ws_form", "bcn_speed"} - (
        {"gn_groups", "gn_narrow"} if arch != settings.arch else set())
    twin = dataclasses.replace(settings, arch=arch, options=options, given=frozenset(given),
                               ghost_batch=0)
    return None if twin == settings else twin


def time_steps(model: nn.Module, device: torch.device, batch: int, size: int, speed: Speed,
               timing: Timing, num_classes: int) -> Seconds:
    """Seconds per training step (forward, backward, SGD) of ``model`` on a random batch."""
    fmt = torch.channels_last if speed.channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=fmt)
    if speed.compile:
        model = torch.compile(model, mode=speed.compile)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=device)

    def step():
        with autocast(device, speed.amp):
            loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return time_calls(step, timing, device)


def model_name(settings: ModelSettings) -> str:
    """The model of a line label: the architecture (with its depth where given: l_resnet-20),
    its pair where given (norm=bcn ws=std) and its micro-batches where set."""
    depth = settings.options.get("depth") if "depth" in settings.given else None
    name = settings.arch + (f"-{depth}" if depth else "")
    if "norm" in settings.given:
        name += f" norm={settings.options['norm']}"
    if "ws" in settings.given:
        name += " ws" + (f"={settings.options['ws_form']}" if "ws_form" in settings.given else "")
    return name + (f" ghost-batch={settings.ghost_batch}" if settings.ghost_batch else "")


def label(settings: ModelSettings, speed: Speed) -> str:
    """A configuration's line label: ``model_name`` and the speed flags."""
    return (f"{model_name(settings)} amp={speed.amp} channels_last={speed.channels_last} "
            f"compile={speed.compile or 'none'}")


def bench_step(args, model_flags: Sequence[str]) -> None:
    """The step benchmark of the parsed ``args`` (batch, image size, device, speed, timing,
    which comparisons) and ``model_flags``."""
    device = torch.device(args.device)
    archs, settings, size = model_settings(model_flags)
    size = args.image_size or size
    num_classes = 10 if size == 32 else 1000
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, batch {args.batch}, {size}x{size}, threads "
          f"{torch.get_num_threads()}")
    speed = Speed(args.amp, args.channels_last, args.compile)
    configs = [(settings, speed)]
    if speed != REFERENCE and not args.no_baseline:
        configs.append((settings, REFERENCE))
    if settings.ghost_batch and not args.no_baseline:
        configs.append((dataclasses.replace(settings, ghost_batch=0), speed))
    twin = bn_twin(archs, settings) if settings.arch.startswith("l_") else None  # l_* only
    if twin and not args.no_twin:
        configs.append((twin, speed))
    runs = []
    for config, config_speed in configs:
        torch.manual_seed(0)
        model = build_model(archs, config, num_classes, device)
        seconds = time_steps(model, device, args.batch, size, config_speed, args.timing,
                             num_classes)
        runs.append((label(config, config_speed), seconds))
        report(runs[-1][0], args.batch, seconds)
    first, base = runs[0][0], runs[0][1].median
    for name, seconds in runs[1:]:
        print(f"ratio: {first} is {seconds.median / base:.2f}x the speed of {name} "
              f"(median step {base * 1000:.1f} vs {seconds.median * 1000:.1f} ms)")
