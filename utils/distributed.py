"""torch.distributed helpers. Without a process group every function is the 1-process answer,
so the engine calls them unconditionally."""
import gc
import os
import sys
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from .slurm import slurm_group_store

__all__ = ["world_size", "rank", "is_main", "launched_as_main", "max_over_processes",
           "gather_objects", "all_reduce_sum", "init_from_env",
           "broadcast_seed", "wrap", "unwrap", "cleanup", "shard"]


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if initialized() else 1


def rank() -> int:
    return dist.get_rank() if initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_as_main() -> bool:
    """Whether this process is rank 0 as its launcher says, before any process group exists
    (torchrun's RANK; a process launched alone is rank 0)."""
    return os.environ.get("RANK", "0") == "0"


_signal_group = None  # a CPU (gloo) group for agreeing on a stop without a GPU sync


def max_over_processes(value: int) -> int:
    """The largest of every process's integer ``value``. Over gloo on the CPU: no GPU sync, a
    few tens of microseconds, so it can run every step (the engine agrees on stopping with it)."""
    if not initialized():
        return int(value)
    box = torch.tensor([int(value)])
    dist.all_reduce(box, op=dist.ReduceOp.MAX, group=_cpu_group())
    return int(box.item())


def _cpu_group():
    global _signal_group
    if _signal_group is None:
        _signal_group = dist.new_group(backend="gloo")
    return _signal_group


def gather_objects(value: Any) -> list:
    """[every process's ``value``] in rank order, on every process (over the CPU group)."""
    if not initialized():
        return [value]
    out = [None] * world_size()
    dist.all_gather_object(out, value, group=_cpu_group())
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place; returns it."""
    if initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _restarted_group_store() -> dict:
    """init_process_group's store for a group torchrun restarted (--max-restarts, after a
    worker died): the launcher's store under a prefix of this attempt, so no process reads the
    addresses the dead attempt's processes left there. Nothing (env://) for the first attempt."""
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    if not attempt:
        return {}
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          is_master=False, wait_for_workers=False)
    return dict(store=dist.PrefixStore(f"restart_{attempt}", store),
                rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))


def init_from_env() -> Optional[torch.device]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR...):
    NCCL with one GPU per process, gloo on the CPU; or the one utils.slurm adopted from srun's
    variables, whose rank 0 waits a bounded time for the others. Returns this process's device,
    or None when not launched by torchrun or srun. Non-main processes print nothing."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    options = _restarted_group_store() or slurm_group_store()
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, **options)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", **options)
    if dist.get_rank() != 0:
        sys.stdout = open(os.devnull, "w")
    return device


def broadcast_seed(seed: int) -> int:
    """The main process's seed on every process (each would otherwise draw its own)."""
    if not initialized():
        return seed
    box = [seed]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when in a process group."""
    if not initialized():
        return model
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (evaluation needs no gradient sync,
    and a process whose shard of the last batch is empty must not be left out of a collective)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def cleanup(synchronize: bool = True) -> bool:
    """Leave the process group. After a clean finish all processes meet first: a process that
    tears gloo down while another is still in a collective aborts it. Returns whether there was
    a group to leave."""
    if not initialized():
        return False
    if synchronize:
        dist.barrier()
    # A DDP wrapper kept alive by a reference cycle holds the group; freed only at interpreter
    # exit, its gloo threads would be joined during finalization, where they can abort.
    gc.collect()
    global _signal_group
    _signal_group = None
    dist.destroy_process_group()
    return True


def shard() -> dict[str, int]:
    """This process's place among all, as EpochBatches takes it."""
    return {"rank": rank(), "world": world_size()}
