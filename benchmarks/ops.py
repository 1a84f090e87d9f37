"""``bench.py ops``: the aten ops one training step launches, counted, beside the same network
with BatchNorm. A count stands for a time where the step is launch-bound (a GPU at small
batches: the WS paper's 1-2 images per GPU): eager mode launches about one kernel per op, and
the count does not depend on the machine, so it is a fact BENCHMARKS.md can state.

What is counted: every aten op that reaches the dispatcher below autograd during the forward and
backward passes of a step's micro-batches (``--iter-size K`` of them, through the engine's own
``micro_step``, as training runs them); views and detaches launch nothing and are not counted,
nor is the optimizer's update (the same for every norm)."""
import collections
from typing import Counter, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from utils.session.build import build_model
from utils.settings.values import ModelSettings, RecipeSettings
from utils.train.engine import micro_step
from utils.train.recipe import make_recipe

from .step import bn_twin, model_name, model_settings

__all__ = ["OpCounter", "count_step_ops", "bench_ops"]


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while it is active, by name (views and detaches left
    out: an op whose every output aliases an input launches no kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.counts[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def count_step_ops(model: torch.nn.Module, batch: int, size: int, num_classes: int,
                   iter_size: int = 1, amp: str = "none") -> Counter:
    """The ops of one optimizer step of ``model`` (train mode, on the CPU): ``iter_size``
    micro-batches of ``batch`` random images through the engine's micro_step, after one
    uncounted step (first calls allocate and initialise)."""
    model.train()
    recipe = make_recipe(model, RecipeSettings(iter_size=iter_size, amp=amp), num_classes,
                         batches_per_epoch=iter_size)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, num_classes, (batch,))

    def step():
        for k in range(iter_size):
            micro_step(model, x, y, recipe, 1 / iter_size, last_of_step=k == iter_size - 1)

    step()
    recipe.optimizer.zero_grad(set_to_none=True)
    with OpCounter() as counter:
        step()
    return counter.counts


def bench_ops(args, model_flags: Sequence[str]) -> None:
    """Print the op count of a step of the model of ``model_flags`` and of its BatchNorm twin,
    their ratio, and each one's most frequent ops."""
    archs, settings, size = model_settings(model_flags)
    size = args.image_size or size
    num_classes = 10 if size == 32 else 1000
    print(f"aten ops of one training step (forward and backward of {args.iter_size} "
          f"micro-batch{'es' if args.iter_size > 1 else ''} of {args.batch} images, {size}x"
          f"{size}, amp={args.amp}; views and the optimizer's update not counted), torch "
          f"{torch.__version__}")
    configs = [settings] + [t for t in [bn_twin(archs, settings)] if t and not args.no_twin]
    totals = []
    for config in configs:
        torch.manual_seed(0)
        model = build_model(archs, config, num_classes, torch.device("cpu"))
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        counts = count_step_ops(model, args.batch, size, num_classes, args.iter_size, args.amp)
        totals.append(sum(counts.values()))
        print(f"{_label(config, args)}: {totals[-1]} ops")
        print("    top: " + ", ".join(f"{op} {n}" for op, n in counts.most_common(args.top)))
    if len(totals) == 2:
        print(f"ratio: {_label(configs[0], args)} launches {totals[0] / totals[1]:.2f}x the "
              f"ops of {_label(configs[1], args)} ({totals[0]} vs {totals[1]})")


def _label(settings: ModelSettings, args) -> str:
    return (f"{model_name(settings)}" + (f" amp={args.amp}" if args.amp != "none" else "")
            + (" channels_last" if args.channels_last else ""))
