"""The device of a run and its seed, chosen first.

Order matters: ``select_device`` sets CUDA_VISIBLE_DEVICES from --gpu-id before any CUDA call of
the run (flags are parsed and checked without CUDA), so --gpu-id always names the GPU that
trains.
"""
import os
import random
from typing import NamedTuple, Optional

import torch

from .. import distributed
from ..cpu_memory import keep_freed_memory
from ..settings.flag import UsageError
from ..settings.values import DeviceSettings

__all__ = ["Device", "select_device", "use_deterministic_algorithms", "choose_seed"]

CPU_NAMES = ("", "cpu", "-1")


class Device(NamedTuple):
    """The device a run trains on, and how many GPUs --gpu-id gave it (0 on the CPU; 1 per
    process under torchrun; more: DataParallel)."""
    device: torch.device
    gpu_count: int


def select_device(settings: DeviceSettings, amp: str = "none") -> Device:
    """The Device of a DeviceSettings. Under torchrun, one device per process from its
    environment (--gpu-id is not used). Otherwise --gpu-id sets CUDA_VISIBLE_DEVICES, as the
    reference does, and only then is CUDA asked what it has: no GPU and --gpu-id not written
    means the CPU; a GPU named but not there is a UsageError, and so is fp16 (``amp``, the
    recipe's) off CUDA."""
    if settings.deterministic:
        use_deterministic_algorithms()
    device = distributed.init_from_env()
    if device is not None:
        gpu_count = 1
    else:
        device, gpu_count = _device_from_gpu_id(settings.gpu_id, settings.gpu_id_given)
    if amp == "fp16" and device.type != "cuda":
        raise UsageError("--amp fp16 needs a CUDA GPU; use --amp bf16 on the CPU")
    if device.type == "cpu":
        keep_freed_memory()  # batches and activations reuse heap memory (utils.cpu_memory)
    return Device(device, gpu_count)


def use_deterministic_algorithms() -> None:
    """--deterministic: torch's deterministic kernels only, cuDNN's too and without its
    benchmark mode (which picks kernels by timing), and cuBLAS's fixed workspace, which CUDA
    reads when it starts: so this comes before any CUDA call."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _device_from_gpu_id(gpu_id: str, given: bool) -> Device:
    if gpu_id.strip().lower() in CPU_NAMES:
        return Device(torch.device("cpu"), 0)
    ids = [s.strip() for s in gpu_id.split(",") if s.strip()]
    if not all(s.isdigit() for s in ids):
        raise UsageError(f"--gpu-id takes comma-separated GPU numbers or 'cpu', got {gpu_id!r}")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available == 0:
        if given:
            raise UsageError(f"--gpu-id {gpu_id}: no such CUDA GPU on this machine "
                             f"(use --gpu-id cpu to train on the CPU)")
        return Device(torch.device("cpu"), 0)
    if available < len(ids):
        raise UsageError(f"--gpu-id {gpu_id}: asked for {len(ids)} GPUs, CUDA sees only "
                         f"{available} of them")
    return Device(torch.device("cuda", 0), len(ids))


def choose_seed(seed: Optional[int], train_batch: int) -> int:
    """--manualSeed, or a random one (the same on every process). Also checks that each of W
    processes can take train-batch / W images of every batch."""
    world = distributed.world_size()
    if train_batch % world:
        raise UsageError(f"--train-batch {train_batch} does not divide among {world} processes")
    return seed if seed is not None else distributed.broadcast_seed(random.randint(1, 10000))
