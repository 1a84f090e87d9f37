#!/usr/bin/env python
"""Run a trained model on image files: each image's top-k classes by name, with probabilities.

The model is a run (--resume, its checkpoint rebuilt as export.py rebuilds it), an exported
program (--model FILE.pt2) or shared weights (--model FILE.safetensors, rebuilt from the
metadata export.py wrote into it); either way the images go through the run's own evaluation input:
its size, resize, filter and normalisation (utils.session.trained.InputContract), in batches,
on the GPU when there is one.
"""
import argparse
import csv
import glob
import json
import math
import os
import sys
from typing import NamedTuple, Optional

import torch

from utils.cli import run_main
from utils.data.image_files import IMG_EXTENSIONS
from utils.data.decode import decode_file, read_bytes, set_max_pixels
from utils.data.errors import DataError
from utils.data.views import Box, ValView, resized_box
from utils.session.exported import load_exported
from utils.session.trained import InputContract, load_trained
from utils.train.weights_file import is_weights_file
from utils.settings.flag import UsageError
from utils.settings.values import DEFAULT_MAX_PIXELS, INTERPOLATIONS, MAX_IMAGE_SIDE
from utils.train.checkpoint import CheckpointError

EXAMPLES = """examples:
  python predict.py --resume checkpoints/cifar10/l_resnet-20 photos/cat.jpg photos/dog.png
  python predict.py --resume checkpoints/imagenet/l_resnet50 --ema --topk 3 'photos/*.jpg'
  python predict.py --model l_resnet-20.pt2 --format json photos/ > predictions.json
  python predict.py --model l_resnet-20.safetensors photos/
"""


class Predictor(NamedTuple):
    """A model to call on normalised batches, and the input it takes."""
    model: torch.nn.Module
    contract: InputContract


def load_predictor(args: argparse.Namespace, device: torch.device) -> Predictor:
    """The model of --resume (with --ema, its EMA) or of --model FILE (.pt2, or .safetensors:
    rebuilt from its metadata, nothing unpickled), on ``device``."""
    if args.resume or is_weights_file(args.model):
        trained = load_trained(args.resume or args.model, args.ema)
        return Predictor(trained.model.to(device), trained.contract)
    files = {"metadata.json": ""}
    program = load_exported(args.model, files)
    try:
        metadata = json.loads(files["metadata.json"])
        contract = InputContract(int(metadata["input"][-1]), metadata.get("resize"),
                                 str(metadata.get("interpolation", "bilinear")),
                                 tuple(metadata["mean"]), tuple(metadata["std"]),
                                 metadata.get("classes"))
    except Exception as e:  # a file that is not export.py's program or lacks its metadata
        raise CheckpointError(f"{args.model} is not a program export.py wrote (with its "
                              f"metadata.json): {type(e).__name__}: {e}") from e
    problem = contract_problem(contract)
    if problem:
        raise CheckpointError(f"{args.model}: its metadata.json {problem}; export.py writes "
                              f"none such, so the file was changed: refused")
    return Predictor(program.module().to(device), contract)


def contract_problem(contract: InputContract) -> Optional[str]:
    """What in an export's input contract no model of this project takes, or None: a size or
    resize below 1 or past MAX_IMAGE_SIDE (imagenet.py's own bound), a filter other than
    INTERPOLATIONS, a mean or std of other than 3 finite values, a std that is not positive,
    class names that are not text."""
    numbers = list(contract.mean) + list(contract.std)
    if not 1 <= contract.size <= MAX_IMAGE_SIDE or not (
            contract.resize is None or isinstance(contract.resize, int)
            and contract.size <= contract.resize <= MAX_IMAGE_SIDE):
        return (f"says input {contract.size} resized from {contract.resize} (sides of 1 to "
                f"{MAX_IMAGE_SIDE:,}, the resize at least the crop)")
    if contract.interpolation not in INTERPOLATIONS:
        return f"names the filter {contract.interpolation!r} ({', '.join(INTERPOLATIONS)})"
    if len(contract.mean) != 3 or len(contract.std) != 3 or not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
        return f"gives mean {list(contract.mean)} and std {list(contract.std)} (3 numbers each)"
    if min(contract.std) <= 0:
        return f"gives std {list(contract.std)}, which must be positive"
    if contract.classes is not None and not (
            isinstance(contract.classes, list) and all(isinstance(c, str)
                                                      for c in contract.classes)):
        return "gives class names that are not a list of text"
    return None


def image_paths(patterns: list) -> list:
    """The image files of ``patterns``: files, folders (every image below them, sorted) and
    globs; a name that matches nothing is a UsageError."""
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            paths += sorted(os.path.join(d, f) for d, _, names in os.walk(pattern)
                            for f in names if f.lower().endswith(IMG_EXTENSIONS))
        elif os.path.exists(pattern):
            paths.append(pattern)
        else:
            matches = sorted(glob.glob(os.path.expanduser(pattern)))
            if not matches:
                raise UsageError(f"{pattern}: no such file, folder or matching files")
            paths += [m for m in matches if os.path.isfile(m)]
    return paths


def view(path: str, contract: InputContract) -> torch.Tensor:
    """The (3, S, S) uint8 view of an image file the model takes: the evaluation crop of an
    imagenet.py run, the whole image resized for a cifar.py one."""
    image = decode_file(read_bytes(path), path)
    if contract.resize is not None:
        return ValView(contract.size, contract.resize, contract.interpolation)(image).permute(
            2, 0, 1)
    whole = Box(0, 0, image.shape[-2], image.shape[-1])
    nhwc = image.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    return resized_box(nhwc, whole, contract.size, contract.interpolation)[0]


def predict(predictor: Predictor, images: torch.Tensor, topk: int) -> tuple:
    """(probabilities, class indices) of the top ``topk`` classes of uint8 ``images``."""
    contract = predictor.contract
    device = next(iter(predictor.model.parameters()), torch.empty(0)).device
    mean = torch.tensor(contract.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(contract.std, device=device).view(1, -1, 1, 1)
    x = (images.to(device).float() / 255 - mean) / std
    with torch.no_grad():
        logits = predictor.model(x).float()
    if not torch.isfinite(logits).all():
        raise CheckpointError("the model's outputs are not finite (NaN or infinite weights): "
                              "no prediction is made from them")
    classes = contract.classes
    if classes is not None and len(classes) != logits.shape[1]:
        raise CheckpointError(f"the model gives {logits.shape[1]} outputs for "
                              f"{len(classes)} class names: which name is which is unknown")
    probabilities = logits.softmax(dim=1)
    return probabilities.topk(min(topk, probabilities.shape[1]), dim=1)


def class_name(classes: Optional[list], index: int) -> str:
    return classes[index] if classes is not None and index < len(classes) else str(index)


# A spreadsheet evaluates a cell that starts with one of these as a formula (OWASP's CSV
# injection): a class named "=HYPERLINK(...)" by a training folder would run as one.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs: one that starts like a formula gets a leading
    single quote, which spreadsheets show as text."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write(results: list, fmt: str) -> None:
    """Each image's top-k, as text lines, one JSON array or CSV rows."""
    if fmt == "json":
        json.dump([{"path": path, "top": [[name, p] for name, p in top]}
                   for path, top in results], sys.stdout, indent=1)
        print()
    elif fmt == "csv":
        out = csv.writer(sys.stdout)
        out.writerow(["path", "rank", "class", "probability"])
        for path, top in results:
            for rank, (name, p) in enumerate(top, start=1):
                out.writerow([csv_cell(path), rank, csv_cell(name), f"{p:.6f}"])
    else:
        for path, top in results:
            print(f"{path}: " + ", ".join(f"{name} {p:.4f}" for name, p in top))


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--resume", metavar="RUN", help="a run folder or checkpoint file")
    source.add_argument("--model", metavar="FILE", help="a file export.py wrote: a program "
                                                        "(.pt2) or safetensors (.safetensors)")
    parser.add_argument("--ema", action="store_true", help="--resume: the EMA of the weights")
    parser.add_argument("--topk", type=int, default=5, metavar="K",
                        help="classes shown per image (default: %(default)s)")
    parser.add_argument("--format", default="text", choices=("text", "json", "csv"),
                        help="output (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=64, help="images per forward (default: "
                                                              "%(default)s)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help="refuse images of more pixels (a decompression bomb's defence; "
                             "default: %(default)s, Pillow's)")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders, globs")
    args = parser.parse_args(argv)
    for name in ("topk", "batch", "max_pixels"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got "
                             f"{getattr(args, name)}")
    if args.ema and args.model:
        raise UsageError("--ema applies to --resume (an export holds the weights it was "
                         "exported with)")
    paths = image_paths(args.paths)
    if not paths:
        raise UsageError(f"no image files in {' '.join(args.paths)} (the extensions read: "
                         f"{', '.join(IMG_EXTENSIONS)})")
    set_max_pixels(args.max_pixels)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    predictor = load_predictor(args, device)
    classes = predictor.contract.classes
    if classes is None:
        print("warning: the run records no class names (a checkpoint from before they were "
              "recorded): classes are unknown, printing their indices", file=sys.stderr)
    results, failed = [], 0
    for start in range(0, len(paths), args.batch):
        good, views = [], []
        for path in paths[start:start + args.batch]:
            try:
                views.append(view(path, predictor.contract))
                good.append(path)
            except DataError as e:
                print(f"error: {e}", file=sys.stderr)
                failed += 1
        if views:
            probabilities, indices = predict(predictor, torch.stack(views), args.topk)
            for path, ps, ks in zip(good, probabilities.tolist(), indices.tolist()):
                results.append((path, [(class_name(classes, k), p) for k, p in zip(ks, ps)]))
    try:
        write(results, args.format)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (| head): nothing more to say, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
