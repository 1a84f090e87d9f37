"""A run shared as safetensors (export.py --format safetensors, utils.train.weights_file): the
raw weights and what rebuilds the model; read wherever a model file is read (predict.py
--model, --weights, -e --weights, export.py) with the same results as the run itself; a damaged
or tampered header is one line; nothing in it is unpickled."""
import json
import os
import struct

import pytest
import torch

import cifar
import export
import predict
from builders import folder_run, make_image_folder, one_line_failure
from utils.train.checkpoint import read_checkpoint
from utils.train.weights_file import FORMAT, read_weights_file

CLASSES = ["ant", "bee", "cat"]
TINY = ["--epochs", "1", "--train-batch", "4", "--test-batch", "4", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny GN+WS run with a held-out split (so it has test scores) and an EMA, its
    safetensors export, and two photos."""
    root = tmp_path_factory.mktemp("shared")
    folder, data = folder_run(root, CLASSES, ["--val-split", "0.5", "--ema", "0.9"])
    shared = str(root / "m.safetensors")
    assert export.main(["--resume", folder, "-o", shared, "--format", "safetensors"]) == 0
    photos = make_image_folder(str(root / "photos"), splits=(("x", 2),), classes=("p",),
                               size=(40, 30), ext="jpg", seed=4)
    photos = sorted(os.path.join(photos, "x", "p", f) for f in
                    os.listdir(os.path.join(photos, "x", "p")))
    return folder, shared, data, photos


def probabilities(argv, capsys):
    assert predict.main(argv + ["--format", "json", "--topk", "3"]) == 0
    return {item["path"]: {name: p for name, p in item["top"]}
            for item in json.loads(capsys.readouterr().out)}


def test_predict_from_the_safetensors_equals_the_run(run, capsys):
    folder, shared, _, photos = run
    from_run = probabilities(["--resume", folder] + photos, capsys)
    from_file = probabilities(["--model", shared] + photos, capsys)
    assert from_run.keys() == from_file.keys()
    for path in from_run:
        assert from_run[path].keys() == from_file[path].keys()
        for name, p in from_run[path].items():
            assert abs(p - from_file[path][name]) <= 1e-4


def test_evaluating_the_safetensors_scores_as_the_run(run, tmp_path, capsys):
    folder, shared, data, _ = run

    def score(argv):
        cifar.main(argv + ["--data", data, "--no-progress"])
        return [line for line in capsys.readouterr().out.splitlines() if "Test Acc" in line]

    by_run = score(["-e", "--resume", folder, "-c", str(tmp_path / "a")])
    by_file = score(["-a", "l_resnet", "--depth", "8", "-e", "--weights", shared,
                     "-c", str(tmp_path / "b")])
    assert by_run and by_file == by_run


def test_it_holds_the_raw_weights_and_what_rebuilds_the_model(run):
    folder, shared, _, _ = run
    checkpoint = read_checkpoint(folder)
    saved = read_weights_file(shared)
    assert saved["state_dict"].keys() == checkpoint.state_dict.keys()
    for key, tensor in checkpoint.state_dict.items():  # not folded: WSConv2d's own weights
        assert torch.equal(saved["state_dict"][key], tensor), key
    assert saved["arch"] == "l_resnet" and saved["num_classes"] == 3
    assert saved["classes"] == CLASSES and saved["args"] == checkpoint.args
    assert saved["args"]["ws"] is True and saved["args"]["norm"] == "gn"
    with open(os.path.join(folder, "run.json")) as f:
        assert saved["run"] == json.load(f)
    assert saved["input"]["input"] == [3, 32, 32]
    from safetensors import safe_open
    with safe_open(shared, "pt") as f:
        metadata = f.metadata()
    assert metadata["format"] == FORMAT and metadata["weights"] == "raw"
    assert metadata["script"] == "cifar.py"


def test_the_ema_export_holds_the_averaged_weights(run, tmp_path):
    folder, _, _, _ = run
    path = str(tmp_path / "ema.safetensors")
    assert export.main(["--resume", folder, "--ema", "-o", path, "--format", "safetensors"]) == 0
    averaged = read_checkpoint(folder).ema_state_dict
    saved = read_weights_file(path)["state_dict"]
    for key, tensor in saved.items():
        assert torch.equal(tensor, averaged["module." + key]), key


def test_export_reads_a_safetensors_as_it_reads_the_run(run, tmp_path, capsys):
    folder, shared, _, photos = run
    again = str(tmp_path / "again.pt2")
    assert export.main(["--resume", shared, "-o", again]) == 0
    direct = str(tmp_path / "direct.pt2")
    assert export.main(["--resume", folder, "-o", direct]) == 0
    capsys.readouterr()
    assert probabilities(["--model", again] + photos, capsys) == probabilities(
        ["--model", direct] + photos, capsys)


def test_fine_tuning_from_a_safetensors_keeps_the_rules(run, tmp_path, capsys):
    _, shared, _, _ = run
    other = make_image_folder(str(tmp_path / "two"), classes=("x", "y"))
    cifar.main(["-a", "l_resnet", "--depth", "8", "--weights", shared, "--data", other,
                "-c", str(tmp_path / "tuned")] + TINY)
    out = capsys.readouterr().out
    assert f"fine-tuned from 3 to 2 classes: left out and freshly initialised fc.weight, " \
           f"fc.bias" in out
    with open(tmp_path / "tuned" / "run.json") as f:
        assert json.load(f)["initial_weights"]["file"] == shared


def test_a_safetensors_is_not_resumed(run, capsys):
    _, shared, data, _ = run
    code, line = one_line_failure(cifar.main, ["--resume", shared, "--data", data], capsys)
    assert code == 2 and "no training state to resume" in line and f"--weights {shared}" in line


def test_a_safetensors_of_another_project_reads_as_a_state_dict(run, tmp_path):
    from safetensors.torch import save_file
    folder, _, _, _ = run
    path = str(tmp_path / "plain.safetensors")
    save_file({k: v.contiguous() for k, v in read_checkpoint(folder).state_dict.items()}, path)
    checkpoint = read_checkpoint(path)
    assert checkpoint.arch is None and checkpoint.state_dict.keys() == read_checkpoint(
        folder).state_dict.keys()


def rewritten(path, to, header=None, tail=b"", cut=None):
    """A copy of the safetensors file ``path`` at ``to`` with its header changed by
    ``header(dict)``, bytes appended, or the file cut at ``cut`` bytes."""
    with open(path, "rb") as f:
        data = f.read()
    length = struct.unpack("<Q", data[:8])[0]
    head, rest = json.loads(data[8:8 + length]), data[8 + length:]
    if header is not None:
        header(head)
    text = json.dumps(head).encode()
    out = struct.pack("<Q", len(text)) + text + rest + tail
    with open(to, "wb") as f:
        f.write(out[:cut] if cut is not None else out)
    return str(to)


def first_tensor(head):
    return head[next(k for k in head if k != "__metadata__")]


def raw_header(path, to, text):
    with open(path, "rb") as f:
        data = f.read()
    length = struct.unpack("<Q", data[:8])[0]
    with open(to, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data[8 + length:])
    return str(to)


DAMAGES = {
    "bad-json": (lambda p, t: raw_header(p, t, b'{"a": [1,'), "its header is not JSON"),
    "header-past-end": (lambda p, t: rewritten(p, t, cut=40), "past the end of the file"),
    "offsets-past-end": (lambda p, t: rewritten(p, t, header=lambda h: first_tensor(h).update(
        data_offsets=[0, 10 ** 9])), "outside the file's"),
    "shape-does-not-fit": (lambda p, t: rewritten(p, t, header=lambda h: first_tensor(h).update(
        shape=[7, 7, 7])), "but spans"),
    "unknown-dtype": (lambda p, t: rewritten(p, t, header=lambda h: first_tensor(h).update(
        dtype="F128")), "which safetensors does not have"),
    "metadata-not-text": (lambda p, t: rewritten(p, t, header=lambda h: h.update(
        __metadata__={"format": 1})), "is not a map of text to text"),
    "metadata-json": (lambda p, t: rewritten(p, t, header=lambda h: h["__metadata__"].update(
        args="{not json")), "its metadata 'args' is not JSON"),
    "metadata-malformed": (lambda p, t: rewritten(p, t, header=lambda h: h["__metadata__"].update(
        num_classes='"three"')), "malformed 'num_classes'"),
    "too-short": (lambda p, t: rewritten(p, t, cut=5), "fewer than its 8-byte header length"),
    "deep-header": (lambda p, t: raw_header(p, t, b'{"a": ' + b"[" * 100000 + b"]" * 100000
                                            + b"}"), "its header nests deeper"),
    "deep-metadata": (lambda p, t: rewritten(p, t, header=lambda h: h["__metadata__"].update(
        run="[" * 100000 + "]" * 100000)), "its metadata 'run' nests deeper"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("reader", ["predict", "weights"])
def test_a_damaged_or_tampered_header_is_one_line(run, tmp_path, capsys, damage, reader):
    _, shared, data, photos = run
    make, words = DAMAGES[damage]
    bad = make(shared, tmp_path / "bad.safetensors")
    main, argv = ((predict.main, ["--model", bad] + photos) if reader == "predict" else
                  (cifar.main, ["-a", "l_resnet", "--depth", "8", "--weights", bad, "--data",
                                data, "-c", str(tmp_path / "r")] + TINY))
    code, line = one_line_failure(main, argv, capsys)
    assert code == 1 and words in line and bad in line, line


def test_a_tensor_of_the_wrong_kind_does_not_load(run, tmp_path, capsys):
    """A span that fits its dtype and shape, but an integer tensor where the model has a float
    one: load_state_dict would cast it silently."""
    from safetensors.torch import save
    folder, shared, _, photos = run
    saved = read_weights_file(shared)
    tensors = dict(saved["state_dict"])
    tensors["fc.bias"] = torch.zeros(3, dtype=torch.int32)
    from safetensors import safe_open
    with safe_open(shared, "pt") as f:
        metadata = f.metadata()
    bad = tmp_path / "kind.safetensors"
    bad.write_bytes(save(tensors, metadata=metadata))
    code, line = one_line_failure(predict.main, ["--model", str(bad)] + photos, capsys)
    assert code == 1 and "dtype mismatches: fc.bias: checkpoint torch.int32 vs model " \
                         "torch.float32" in line, line
