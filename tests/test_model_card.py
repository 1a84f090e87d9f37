"""The model card export.py writes beside every export (utils.session.model_card): Hugging
Face's shape, and every number and name the run's own (run.json and the checkpoint), never
typed by hand; its three lines of loading run."""
import json
import os
import re
import shutil

import pytest
import torch

import cifar
import export
from builders import REPO, folder_run

CLASSES = ["ant", "bee", "cat"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder, _ = folder_run(tmp_path_factory.mktemp("card"), CLASSES,
                           ["--val-split", "0.5", "--ema", "0.9"])
    cifar.main(["--resume", folder, "--epochs", "2", "--no-progress"])  # a second session
    return folder


def card_of(run, tmp_path, fmt, name="m", extra=()):
    out = str(tmp_path / f"{name}{export.FORMATS[fmt]}")
    assert export.main(["--resume", run, "-o", out, "--format", fmt] + list(extra)) == 0
    with open(out + ".md") as f:
        return f.read()


def front_matter(card):
    assert card.startswith("---\n")
    return card.split("---\n")[1]


@pytest.mark.parametrize("fmt", sorted(export.FORMATS))
def test_every_export_has_a_card_in_hugging_faces_shape(run, tmp_path, fmt):
    card = card_of(run, tmp_path, fmt)
    meta = front_matter(card)
    for line in ("library_name: pytorch", "pipeline_tag: image-classification",
                 "- weight-standardization", "- group-normalization", "- l_resnet",
                 "metrics:\n- accuracy", "model-index:\n- name: l_resnet"):
        assert line in meta, line
    assert "datasets:" not in meta  # an ImageFolder of cifar.py: no Hub dataset to name
    for section in ("## Data", "## Training", "## Results", "## Input", "## How to load"):
        assert section in card


def test_the_cards_numbers_are_run_jsons(run, tmp_path):
    card = card_of(run, tmp_path, "safetensors")
    with open(os.path.join(run, "run.json")) as f:
        record = json.load(f)
    result = record["result"]
    expected = {"best validation accuracy (top-1 %)": result["best_acc"],
                "final validation accuracy (top-1 %)": result["final_acc"]}
    for key, score in result["test"].items():
        expected[f"test accuracy of the {key} weights (top-1 %)"] = score["top1"]
    assert set(result["test"]) == {"final", "best", "ema"}
    meta = front_matter(card)
    in_index = re.findall(r"value: ([\d.]+)\n +name: (.+)", meta)
    assert {name: float(value) for value, name in in_index} == {
        name: round(value, 2) for name, value in expected.items()}
    assert len(in_index) == len(expected)
    rows = dict(re.findall(r"^\| (.+?) \| ([\d.]+) \|$", card, re.M))
    assert {name: float(value) for name, value in rows.items()} == {
        name: round(value, 2) for name, value in expected.items()}
    for session in record["sessions"]:
        assert "python " + " ".join(session["command"]) in card
    assert ", ".join(CLASSES) in card
    assert "Validation: 0.5 of the training images held out" in card
    normalisation = torch.load(os.path.join(run, "checkpoint.pth.tar"),
                               weights_only=True)["normalisation"]
    assert f"mean {normalisation['mean']}" in card and "resized to 32 x 32" in card


def test_a_card_made_from_the_safetensors_keeps_the_numbers(run, tmp_path):
    card_of(run, tmp_path, "safetensors", name="shared")
    again = str(tmp_path / "again.pt2")
    assert export.main(["--resume", str(tmp_path / "shared.safetensors"), "-o", again]) == 0
    with open(again + ".md") as f:
        card = f.read()
    with open(os.path.join(run, "run.json")) as f:
        best = json.load(f)["result"]["best_acc"]
    assert f"| best validation accuracy (top-1 %) | {best:.2f} |" in card


def test_a_checkpoint_beside_another_runs_record_says_the_numbers_are_unknown(run, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(os.path.join(run, "checkpoint.pth.tar"), alone / "checkpoint.pth.tar")
    with open(alone / "run.json", "w") as f:  # another run's record
        json.dump({"recorded": {}, "sessions": [{"command": ["cifar.py", "-a", "vgg11"]}],
                   "result": {"best_acc": 99.0, "final_acc": 99.0, "epochs": 1}}, f)
    card = card_of(str(alone), tmp_path, "exported")
    assert "99.00" not in card and "No accuracy was recorded" in card
    assert "python cifar.py -a l_resnet" in card  # the checkpoint's own record of the command


def test_an_ema_export_says_so(run, tmp_path):
    card = card_of(run, tmp_path, "safetensors", extra=["--ema"])
    assert "exponential moving average of its weights (--ema)" in card


@pytest.mark.parametrize("fmt", sorted(export.FORMATS))
def test_the_cards_three_lines_load_the_model(run, tmp_path, fmt, monkeypatch):
    card = card_of(run, tmp_path, fmt)
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) == 3
    monkeypatch.chdir(tmp_path)
    images = torch.randn(2, 3, 32, 32)
    scope = {"images": images}
    exec(code.replace("PATH/TO/gn-ws", REPO), scope)  # noqa: S102: our own card's lines
    from utils.session.trained import load_trained
    with torch.no_grad():
        expected = load_trained(run).model(images)
        torch.testing.assert_close(scope["logits"], expected, atol=1e-5, rtol=0)


def test_a_run_on_a_datasets_own_files_names_it_and_an_image_folder_does_not(run, tmp_path):
    from builders import make_cifar_pickles
    data = make_cifar_pickles(str(tmp_path / "official"), n_train=16, n_test=8)
    folder = str(tmp_path / "official-run")
    cifar.main(["-a", "l_resnet", "--depth", "8", "--data", data, "--epochs", "1",
                "--train-batch", "8", "--no-progress", "-c", folder])
    with open(os.path.join(folder, "run.json")) as f:
        assert json.load(f)["dataset"] == "cifar10"
    with open(os.path.join(run, "run.json")) as f:  # an ImageFolder read by cifar.py -d cifar10
        assert json.load(f)["dataset"] is None
    card = card_of(folder, tmp_path, "exported")
    assert "datasets:\n- cifar10" in front_matter(card) and "Dataset: cifar10;" in card
    assert "Dataset: the ImageFolder tree of its --data" in card_of(run, tmp_path, "exported",
                                                                     name="folder")


def test_the_three_ways_of_docs_deployment_md_load_the_runs_model(run, tmp_path, monkeypatch):
    with open(os.path.join(REPO, "docs", "deployment.md")) as f:
        page = f.read()
    code = page.split("## Three ways to load a trained model", 1)[1].split("```python\n", 1)[1]
    code = code.split("```", 1)[0]
    stem = str(tmp_path / "l_resnet-20")
    for fmt in sorted(export.FORMATS):
        assert export.main(["--resume", run, "-o", stem + export.FORMATS[fmt], "--format",
                            fmt]) == 0
    code = code.replace("checkpoints/cifar10/l_resnet-20", stem).replace(
        "PATH/TO/THIS/REPO", REPO)
    from utils.session.trained import load_trained
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = load_trained(run).model(images)
    ways = code.split("\n\n# ")
    assert len(ways) == 3
    for way in ways:  # each alone, with torch imported as the first does
        scope = {}
        exec("import torch\n# " + way, scope)  # noqa: S102: our own documentation's lines
        with torch.no_grad():  # the program is in eval mode already, and refuses .eval()
            torch.testing.assert_close(scope["model"](images), expected, atol=1e-5, rtol=0)
