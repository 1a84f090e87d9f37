"""An ImageFolder tree read file by file (imagenet.py, and a held-out part of it): ``ImageFiles``
lists the files and labels; ``FileItems`` is the one dataset shell every loader reads them
through, with its own item function (decoded tensors, raw bytes, ...)."""
import copy
from typing import Any, Callable, Optional, Sequence, Union

import torch
from PIL import Image

from .datasets import list_image_folder, read_rgb

__all__ = ["ImageFiles", "FileItems"]


class ImageFiles(torch.utils.data.Dataset):
    """An ImageFolder tree read file by file (ImageNet): item i is (RGB PIL image, label).
    ``classes``: the training split's, to label this split's folders by name."""

    def __init__(self, root: str, classes: Optional[list[str]] = None):
        self.root = root
        self.classes, self.samples = list_image_folder(root, classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        path, label = self.samples[i]
        return read_rgb(path), label

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]

    def subset(self, index: Sequence[int]) -> "ImageFiles":
        """The files at ``index`` (a held-out split's, or the rest), with the same classes."""
        part = copy.copy(self)
        part.samples = [self.samples[i] for i in index]
        return part


class FileItems(torch.utils.data.Dataset):
    """Item i of an ImageFiles tree as ``item(path, label, i)``: the one dataset shell of every
    way the loaders read files (decoded tensors, raw bytes, ...), the reading being ``item``'s
    (a module-level function, so worker processes can take it). A key may also be (epoch, i),
    as the epoch-aware samplers give it."""

    def __init__(self, files: ImageFiles, item: Callable[[str, int, int], Any]):
        self.samples, self.item = files.samples, item

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: Union[int, tuple[int, int]]) -> Any:
        i = key[1] if isinstance(key, tuple) else key
        path, label = self.samples[i]
        return self.item(path, label, i)
