#!/usr/bin/env python
"""Export a trained run for deployment and sharing: its GN+WS model with Weight Standardization
folded into plain convolutions (models/deploy.py), written by torch.export or as a state_dict;
or its raw weights as safetensors, with what rebuilds the model (utils.train.weights_file).

    python export.py --resume checkpoints/cifar10/l_resnet-20 -o l_resnet-20.pt2
    python export.py --resume checkpoints/cifar10/l_resnet-20 -o l_resnet-20.pth --format state_dict
    python export.py --resume checkpoints/cifar10/l_resnet-20 -o l_resnet-20.safetensors --format safetensors
    python export.py --resume checkpoints/imagenet/l_resnet50 --ema -o l_resnet50-ema.pt2

The model is rebuilt from the flags the checkpoint records. A .pt2 loads with
torch.export.load(path).module(); a state_dict loads into models.deploy.plain_convs(the l_*
model), the same network with plain convolutions. What the model is travels with it as JSON
(architecture, class count, class names in output order, and the input it takes: size, resize,
filter, mean and std; utils.session.trained.InputContract): inside the .pt2 as its
extra file metadata.json (torch.export.load(path, extra_files={"metadata.json": ""})), and
beside a state_dict as OUTPUT.json. A checkpoint from before class names were recorded gives
"classes": null. Every export gets a model card beside it, OUTPUT.md
(utils.session.model_card), written from the checkpoint and the run's run.json.
"""
import argparse
import json
import os
import sys

import torch

from models.deploy import fold_weight_standardization
from utils.files import not_writable_as_file
from utils.atomic import atomic_save, atomic_serialize, atomic_write
from utils.cli import run_main
from utils.messages import first_line
from utils.records.record import script_of
from utils.session.model_card import model_card, run_record
from utils.session.trained import load_trained
from utils.settings.flag import UsageError
from utils.train.checkpoint import CheckpointError, resolve_checkpoint_path
from utils.train.weights_file import weights_file_bytes

FORMATS = {"exported": ".pt2", "state_dict": ".pth", "safetensors": ".safetensors"}


def sidecars(output: str, fmt: str) -> list:
    """The files written beside -o: the model card (OUTPUT.md), and a state_dict's
    description (OUTPUT.json)."""
    return [output + ".md"] + ([output + ".json"] if fmt == "state_dict" else [])


def check_output(output, resume, replace, beside=()):
    """-o must name a new file in an existing folder: never a checkpoint (the one exported or
    any other: a run's files are its own), and an existing file (or an existing file written
    ``beside`` it) only with --replace."""
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {output}: no folder {folder}")
    # Real paths: a link named -o that points at the checkpoint is the checkpoint.
    source = os.path.realpath(resolve_checkpoint_path(resume))
    real = os.path.realpath(output)
    if real == source or output.endswith(".pth.tar") or real.endswith(".pth.tar"):
        raise UsageError(f"-o {output} would write over a checkpoint (a .pth.tar of a run); "
                         f"name another file")
    for path in [output] + list(beside):
        problem = not_writable_as_file(path)
        if problem:
            raise UsageError(f"-o {output}: {problem}")
        if os.path.exists(path) and not replace:
            raise UsageError(f"-o {output}: {path} exists; add --replace to write over it")


def writer(trained, record, fmt, ema, described):
    """(the content of -o in ``fmt``, the function that writes it to a path)."""
    if fmt == "safetensors":  # the raw weights: WSConv2d standardizes them (weights_file)
        contract = trained.contract
        fields = {"arch": trained.arch, "script": script_of(record),
                  "num_classes": trained.num_classes,
                  "classes": contract.classes, "args": trained.checkpoint.args,
                  "normalisation": {"mean": list(contract.mean), "std": list(contract.std)},
                  "run": record or None, "input": contract.as_metadata()}
        content = weights_file_bytes(trained.model.state_dict(), fields, "ema" if ema else "raw")
        return content, lambda data, path: atomic_write(path, lambda f: f.write(data))
    folded = fold_weight_standardization(trained.model)
    if fmt == "state_dict":
        def save(content, path):
            atomic_save(content, path)
            try:
                atomic_write(path + ".json", lambda f: f.write(described.encode()))
            except OSError:  # weights without their description are not an export
                os.remove(path)
                raise
        return folded.state_dict(), save
    size = trained.contract.size
    program = torch.export.export(folded, (torch.randn(2, 3, size, size),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    return program, lambda content, path: atomic_serialize(path, lambda f: torch.export.save(
        content, f, extra_files={"metadata.json": described}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--resume", required=True, metavar="PATH",
                        help="the run folder, or a checkpoint file (or a .safetensors export of "
                             "one), to export")
    parser.add_argument("-o", "--output", required=True, help="file to write")
    parser.add_argument("--format", default="exported", choices=sorted(FORMATS),
                        help="exported: torch.export program (.pt2, default); state_dict: the "
                             "folded weights (.pth); safetensors: the raw weights and what "
                             "rebuilds the model (.safetensors: --weights, predict.py --model "
                             "and hubconf.py read it)")
    parser.add_argument("--ema", action="store_true", help="export the EMA of the weights")
    parser.add_argument("--replace", action="store_true",
                        help="write over an existing file at -o (never over a checkpoint)")
    args = parser.parse_args(argv)
    beside = sidecars(args.output, args.format)
    check_output(args.output, args.resume, args.replace, beside)
    trained = load_trained(args.resume, args.ema)
    record = run_record(args.resume, trained.checkpoint)
    metadata = {"arch": trained.arch, "num_classes": trained.num_classes,
                "options": trained.options, "ema": args.ema, **trained.contract.as_metadata()}
    content, save = writer(trained, record, args.format, args.ema,
                           json.dumps(metadata, indent=2) + "\n")
    card = model_card(trained, record, args.output, args.format, args.ema)
    try:
        save(content, args.output)
        try:
            atomic_write(args.output + ".md", lambda f: f.write(card.encode()))
        except OSError:  # an export goes with its card, or not at all
            for path in [args.output] + beside[1:]:
                os.remove(path)
            raise
    except (OSError, RuntimeError) as e:  # torch's writers report some failures as RuntimeError
        reason = getattr(e, "strerror", None) or first_line(e)
        raise CheckpointError(f"cannot write {args.output}: {reason}") from e
    kind = ("its raw weights, which WSConv2d standardizes" if args.format == "safetensors" else
            "WS folded into its convolutions")
    print(f"wrote {args.output} ({args.format}: {type(trained.model).__name__} with {kind}) "
          f"and its model card {args.output}.md")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
