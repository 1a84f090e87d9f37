"""Shared test fixtures: where ../shared lives, and tiny datasets the tests make themselves."""
import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("WS_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
MODELS_JSON = os.path.join(SHARED, "reference", "models.json")
CIFAR_NPZ = os.path.join(SHARED, "data", "cifar10-jpeg.npz")


def load_reference_models():
    """The reference's model facts, or None where ../shared is not beside the checkout."""
    if not os.path.isfile(MODELS_JSON):
        return None
    with open(MODELS_JSON) as f:
        return json.load(f)


@pytest.fixture
def cifar_npz():
    if not os.path.isfile(CIFAR_NPZ):
        pytest.skip(f"real CIFAR-10 archive not found at {CIFAR_NPZ}")
    return CIFAR_NPZ


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
