"""torch.distributed helpers. Without a process group every function is the 1-process answer,
so the engine calls them unconditionally."""
import torch
import torch.distributed as dist

__all__ = ["world_size", "rank", "is_main", "all_reduce_sum"]


def initialized():
    return dist.is_available() and dist.is_initialized()


def world_size():
    return dist.get_world_size() if initialized() else 1


def rank():
    return dist.get_rank() if initialized() else 0


def is_main():
    return rank() == 0


def all_reduce_sum(tensor):
    """Sum ``tensor`` over all processes, in place; returns it."""
    if initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
