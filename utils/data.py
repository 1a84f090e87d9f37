"""Datasets: finding and reading CIFAR (official python layout or ImageFolder) into uint8 arrays,
and ImageFolder trees of files for ImageNet. Loading into batches lives in loaders.py."""
import os
import pickle
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

__all__ = ["DataError", "ArrayDataset", "load_cifar", "ImageFiles", "find_image_folder",
           "CIFAR_SPECS", "IMAGENET_MEAN", "IMAGENET_STD"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # the reference's

CIFAR_SPECS = {
    "cifar10": dict(num_classes=10, folder="cifar-10-batches-py",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    label_key="labels", meta=("batches.meta", "label_names"),
                    torchvision="CIFAR10"),
    "cifar100": dict(num_classes=100, folder="cifar-100-python", train=["train"], test=["test"],
                     label_key="fine_labels", meta=("meta", "fine_label_names"),
                     torchvision="CIFAR100"),
}


class DataError(Exception):
    """Data that is missing or unreadable; the message names the place and what was expected."""


class ArrayDataset:
    """Images as one uint8 tensor (N, C, H, W) with int64 labels; small enough to hold whole."""

    def __init__(self, images, labels, classes):
        self.images, self.labels, self.classes = images, labels, classes

    def __len__(self):
        return len(self.labels)


def _read_pickle(path):
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        # The official files were pickled by Python 2 (bytes keys); re-encodings often by 3.
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    except Exception as e:
        raise DataError(f"{path} is not a readable CIFAR python batch file: "
                        f"{type(e).__name__}: {e}") from e


def _read_official(folder, spec):
    """The official python layout, read directly: no md5 check, so mirrors and re-encodings of
    the same arrays load."""
    def split(names):
        images, labels = [], []
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                raise DataError(f"{folder} is missing {name}; the official layout has "
                                f"{', '.join(spec['train'] + spec['test'])}")
            batch = _read_pickle(path)
            try:
                data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                labels.append(np.asarray(batch[spec["label_key"]], dtype=np.int64))
            except (KeyError, ValueError) as e:
                raise DataError(f"{path} does not hold CIFAR data and labels: {e}") from e
            images.append(data)
        return ArrayDataset(torch.from_numpy(np.concatenate(images)),
                            torch.from_numpy(np.concatenate(labels)), None)

    train, test = split(spec["train"]), split(spec["test"])
    meta_path = os.path.join(folder, spec["meta"][0])
    classes = None
    if os.path.isfile(meta_path):
        names = _read_pickle(meta_path).get(spec["meta"][1])
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names or []] or None
    train.classes = test.classes = classes or [str(i) for i in range(spec["num_classes"])]
    return train, test


def list_image_folder(root):
    """(classes, [(path, label)]) of root/<class>/<image>, classes sorted as torchvision does."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise DataError(f"{root} has no class folders (expected {root}/<class>/<image files>)")
    samples = []
    for label, cls in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, cls), followlinks=True)):
            for name in sorted(files):
                if name.lower().endswith(IMG_EXTENSIONS):
                    samples.append((os.path.join(dirpath, name), label))
    if not samples:
        raise DataError(f"{root} has class folders but no image files ({', '.join(IMG_EXTENSIONS)})")
    return classes, samples


def read_rgb(path):
    """An image file as an RGB PIL image; an unreadable file is a DataError naming it."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except Exception as e:
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}") from e


def _read_image_folder(root, classes=None):
    found, samples = list_image_folder(root)
    if classes is not None and found != classes:
        raise DataError(f"{root} has classes {found[:5]}..., but train/ has {classes[:5]}...")

    def decode(path):
        return np.asarray(read_rgb(path))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(decode, [p for p, _ in samples]))
    shape = arrays[0].shape
    for (path, _), a in zip(samples, arrays):
        if a.shape != shape:
            raise DataError(f"images in {root} differ in size: {path} is {a.shape[1]}x"
                            f"{a.shape[0]}, {samples[0][0]} is {shape[1]}x{shape[0]}")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return ArrayDataset(images, labels, found)


def _download(root, spec):
    import torchvision  # only needed here
    dataset_class = getattr(torchvision.datasets, spec["torchvision"])
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a network that answers nothing should not hang the run
    try:
        for train in (True, False):
            dataset_class(root, train=train, download=True)
    finally:
        socket.setdefaulttimeout(previous)


def load_cifar(root, name="cifar10", download=True):
    """(train, test) ArrayDatasets of CIFAR-10/100 under ``root``, which may hold
        the official python layout: root/cifar-10-batches-py or root/cifar-100-python, or
        an ImageFolder layout: root/train/<class>/* and root/test/<class>/*.
    With neither, the official files are downloaded through torchvision when ``download`` and
    the network allow; otherwise DataError says where it looked and what it accepts."""
    if name not in CIFAR_SPECS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(CIFAR_SPECS)}")
    spec = CIFAR_SPECS[name]
    official = os.path.join(root, spec["folder"])
    train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
    if os.path.isdir(official):
        return _read_official(official, spec)
    if os.path.isdir(train_dir) and os.path.isdir(test_dir):
        train = _read_image_folder(train_dir)
        test = _read_image_folder(test_dir, train.classes)
        if len(train.classes) > spec["num_classes"]:
            raise DataError(f"{train_dir} has {len(train.classes)} classes; {name} has "
                            f"{spec['num_classes']}")
        return train, test
    looked = (f"looked in {os.path.abspath(root)} for {spec['folder']}/ (official python "
              f"layout) or train/<class>/ + test/<class>/ (ImageFolder layout)")
    if not download:
        raise DataError(f"no {name} data found: {looked}; downloading is off (--no-download)")
    try:
        os.makedirs(root, exist_ok=True)
        _download(root, spec)
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"no {name} data found and the download failed ({reason}): {looked}")
    return _read_official(official, spec)


class ImageFiles(torch.utils.data.Dataset):
    """An ImageFolder tree read file by file (ImageNet): item i is (RGB PIL image, label)."""

    def __init__(self, root):
        self.root = root
        self.classes, self.samples = list_image_folder(root)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        return read_rgb(path), label


def find_image_folder(root, split):
    path = os.path.join(root, split)
    if not os.path.isdir(path):
        raise DataError(f"{path} not found: --data must hold train/ and val/ ImageFolder trees "
                        f"(<split>/<class>/<image>)")
    return path
