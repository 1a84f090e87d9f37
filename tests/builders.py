"""What the tests build for themselves: tiny datasets in every layout the scripts read, the flags
of a tiny run, a recipe for driving the engine directly, and readers of what runs write. Data is
made here, never committed; the real CIFAR-10 archive is used only where ../shared has it."""
import json
import os

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("WS_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
MODELS_JSON = os.path.join(SHARED, "reference", "models.json")
CIFAR_NPZ = os.path.join(SHARED, "data", "cifar10-jpeg.npz")

# A GN+WS network small enough for a CPU epoch in well under a second.
TINY_MODEL = ["-a", "l_resnet", "--depth", "8"]


def tiny_run(seed, train_batch=16, test_batch=16):
    """The flags of a quick, quiet, reproducible run (data and run folder left to the test)."""
    return ["--no-progress", "--manualSeed", str(seed), "--train-batch", str(train_batch),
            "--test-batch", str(test_batch)]


def folder_run(root, classes, flags=()):
    """A one-epoch cifar.py run of TINY_MODEL with ``flags`` on an ImageFolder of ``classes``
    made under ``root``: (the run folder, the data folder)."""
    import cifar
    data = make_image_folder(os.path.join(str(root), "data"), classes=classes)
    folder = os.path.join(str(root), "run")
    cifar.main(TINY_MODEL + ["--data", data, "--epochs", "1", "--train-batch", "4",
                             "--test-batch", "4", "--no-progress", "-c", folder] + list(flags))
    return folder, data


def one_line_failure(main, argv, capsys):
    """Run a script's ``main`` as its command line does; it must exit non-zero with exactly one
    line on stderr besides warnings, and no traceback. Returns (exit code, the line)."""
    import pytest

    from utils.cli import run_main
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code not in (0, None) and "Traceback" not in err, err
    # Warnings (a --schedule the tiny runs never reach) are not the failure's line.
    lines = [line for line in err.splitlines() if line.strip() and
             not line.startswith("warning: ")]
    assert len(lines) == 1, err
    return exit_info.value.code, lines[0]


def load_reference_models():
    """The reference's model facts, or None where ../shared is not beside the checkout."""
    if not os.path.isfile(MODELS_JSON):
        return None
    with open(MODELS_JSON) as f:
        return json.load(f)


def engine_recipe(optimizer, scaler=None, ema=None, num_classes=10, clip_grad=0.0, amp="none",
                  scheduler=None):
    """A utils.train.recipe.Recipe around ``optimizer`` for calling the engine directly: plain
    cross-entropy, ``scheduler`` (None: none, or one stepped per epoch), no regulariser."""
    import torch.nn as nn

    from utils.train.regularisers import BatchAugment
    from utils.train.recipe import Recipe
    return Recipe(nn.CrossEntropyLoss(), nn.CrossEntropyLoss(), optimizer, scheduler, scaler,
                  BatchAugment(num_classes), ema, clip_grad=clip_grad, amp=amp)


def random_images(n, seed=0, num_classes=10):
    """An in-memory ArrayDataset of ``n`` random CIFAR-shaped uint8 images, image i labelled
    i % num_classes."""
    import torch

    from utils.data.datasets import ArrayDataset
    g = torch.Generator().manual_seed(seed)
    return ArrayDataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                        torch.arange(n) % num_classes, [str(i) for i in range(num_classes)])


def make_cifar_pickles(root, n_train=40, n_test=20, num_classes=10, seed=0):
    """A tiny CIFAR-10 in the official python layout (random pixels; no md5 will match)."""
    import pickle

    import numpy as np
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    per_batch = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
    files = [(f"data_batch_{i + 1}", n) for i, n in enumerate(per_batch)] + [("test_batch", n_test)]
    for name, n in files:
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": [int(v) for v in rng.integers(0, num_classes, n)]}, f)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(num_classes)]}, f)
    return root


def make_image_folder(root, splits=(("train", 4), ("test", 2)), classes=("a", "b", "c"),
                      size=(32, 32), ext="png", seed=0):
    """root/<split>/<class>/<i>.<ext> of random RGB images; ``size`` (w, h) or a list per image."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split, n in splits:
        for cls in classes:
            os.makedirs(os.path.join(root, split, cls), exist_ok=True)
            for i in range(n):
                w, h = size if isinstance(size, tuple) else size[i % len(size)]
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                    os.path.join(root, split, cls, f"{i}.{ext}"))
    return root


def read_log_rows(path):
    with open(path) as f:
        lines = f.read().splitlines()
    return lines[0], [[float(v) for v in line.rstrip("\t").split("\t")] for line in lines[1:]]


def write_idx(path, array):
    """An IDX file (gzipped when the name ends in .gz) of a uint8 array."""
    import gzip
    import struct
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def make_idx_dataset(root, folder, n_train=40, n_test=20, gz=True, seed=0):
    """torchvision's raw layout of an MNIST-style dataset: root/<folder>/raw/*-ubyte[.gz]."""
    rng = np.random.default_rng(seed)
    raw = os.path.join(root, folder, "raw")
    os.makedirs(raw, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte{suffix}"),
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte{suffix}"),
                  np.arange(n, dtype=np.uint8) % 10)
    return root


def _mat_element(kind, payload):
    import struct
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def write_mat(path, arrays, compress=False):
    """A MATLAB 5 .mat file of numeric arrays (uint8 or float64), column-major as MATLAB
    writes them, each optionally zlib-compressed."""
    import struct
    import zlib
    out = b"MATLAB 5.0 MAT-file, written by the tests".ljust(116) + b"\0" * 8 + \
        struct.pack("<H", 0x0100) + b"IM"
    for name, a in arrays.items():
        mat_class, data_type = {np.uint8: (9, 2), np.float64: (6, 9)}[a.dtype.type]
        body = (_mat_element(6, struct.pack("<II", mat_class, 0)) +
                _mat_element(5, struct.pack(f"<{a.ndim}i", *a.shape)) +
                _mat_element(1, name.encode()) +
                _mat_element(data_type, a.tobytes(order="F")))
        element = _mat_element(14, body)
        out += (struct.pack("<II", 15, len(zlib.compress(element))) + zlib.compress(element)
                if compress else element)
    with open(path, "wb") as f:
        f.write(out)


def make_svhn(root, n_train=40, n_test=20, seed=0):
    """SVHN's train_32x32.mat (uncompressed) and test_32x32.mat (compressed): X 32x32x3xN uint8,
    y Nx1 double with 10 standing for the digit 0."""
    rng = np.random.default_rng(seed)
    for name, n, compress in (("train", n_train, False), ("test", n_test, True)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.float64).reshape(n, 1)
        write_mat(os.path.join(root, f"{name}_32x32.mat"), {"X": x, "y": y}, compress)
    return root


def help_of_each_option(text):
    """{option string: its help text} of an argparse --help, whitespace folded."""
    blocks, current = {}, None
    for line in text.splitlines():
        if line.startswith("  -"):
            names, _, rest = line.strip().partition("  ")
            current = names.split(",")[0].split()[0]
            blocks[current] = rest
        elif current and line.startswith("      "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return {name: " ".join(help_text.split()) for name, help_text in blocks.items()}
