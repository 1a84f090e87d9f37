"""The data a run reads and how it is batched, as the scripts' flags choose it."""
import dataclasses
from typing import Optional

from .policies import AugmentPolicy

__all__ = ["DataChoice"]


@dataclasses.dataclass(frozen=True)
class DataChoice:
    """Where the data is (``root``, and cifar.py's ``dataset`` and ``download``), how it is
    loaded (cifar.py's ``loader``, imagenet.py's ``decode``, ``workers`` processes) and batched
    (``train_batch``, ``test_batch``), and the augmentation ``policy`` of its training images;
    None for a flag the script does not have."""
    root: str
    dataset: Optional[str]
    download: bool
    loader: Optional[str]
    decode: Optional[str]
    workers: int
    train_batch: int
    test_batch: int
    policy: AugmentPolicy = AugmentPolicy()
