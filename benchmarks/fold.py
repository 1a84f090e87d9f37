"""``bench.py fold``: inference of a GN+WS model against the same model with WS folded into
plain convolutions (export.py's deployment form), as a ratio."""
from typing import Sequence

import torch

from models.deploy import fold_weight_standardization
from utils.session.build import build_model

from .step import model_settings
from .timing import Seconds, Timing, report, time_calls

__all__ = ["time_forward", "bench_fold"]


def time_forward(model: torch.nn.Module, x: torch.Tensor, timing: Timing) -> Seconds:
    """Seconds per no-grad forward of ``x``."""
    with torch.no_grad():
        return time_calls(lambda: model(x), timing, x.device)


def bench_fold(args, model_flags: Sequence[str]) -> None:
    """The fold benchmark of the parsed ``args`` (batch, device, timing) and ``model_flags``."""
    device = torch.device(args.device)
    archs, choice, size = model_settings(model_flags)
    torch.manual_seed(0)
    model = build_model(archs, choice, 10 if size == 32 else 1000, device).to(device).eval()
    folded = fold_weight_standardization(model)
    x = torch.randn(args.batch, 3, size, size, device=device)
    print(f"device {device}, torch {torch.__version__}, batch {args.batch}, {size}x{size}, "
          f"threads {torch.get_num_threads()}, eval-mode forward")
    ws, plain = time_forward(model, x, args.timing), time_forward(folded, x, args.timing)
    report(f"{choice.arch} with WS", args.batch, ws)
    report(f"{choice.arch} with WS folded", args.batch, plain)
    print(f"ratio: folded is {ws.median / plain.median:.2f}x the speed of WS (median "
          f"{ws.median * 1000:.1f} vs {plain.median * 1000:.1f} ms)")
