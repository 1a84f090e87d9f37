"""--val-split (utils/data/splits.py): a class-balanced share of the training images held out,
the same for every seed; every epoch evaluated on it and model_best chosen by it; the test split
scored once at the end, recorded in run.json and shown by summarize.py; a resume keeps it."""
import json
import os

import pytest
import torch

import cifar
import summarize
from builders import TINY_MODEL, make_cifar_pickles, make_image_folder, read_log_rows, tiny_run
from utils.data.cifar import cifar_loaders
from utils.data.datasets import load_dataset
from utils.data.splits import held_out_split
from utils.scripts import cifar_flags
from utils.session.stages import read_settings


def test_the_held_out_share_is_class_balanced_disjoint_and_fixed():
    labels = torch.arange(10).repeat_interleave(20)  # 10 classes of 20 images
    split = held_out_split(labels, 0.1)
    assert len(split.held_out) == 20 and len(split.train) == 180
    assert set(split.held_out.tolist()).isdisjoint(split.train.tolist())
    assert sorted(split.held_out.tolist() + split.train.tolist()) == list(range(200))
    assert torch.bincount(labels[split.held_out]).tolist() == [2] * 10
    torch.manual_seed(123)  # the global generator has no say
    assert torch.equal(held_out_split(labels, 0.1).held_out, split.held_out)


def test_a_class_keeps_an_image_to_train_on_and_gives_one_at_least():
    labels = torch.tensor([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2])
    split = held_out_split(labels, 0.1)
    assert torch.bincount(labels[split.held_out], minlength=3).tolist() == [1, 1, 0]
    assert torch.bincount(labels[split.train], minlength=3).tolist() == [1, 7, 1]


def test_a_split_that_holds_out_nothing_is_refused_at_the_start(tmp_path, capsys):
    """One training image per class: a class's only image is never held out, so the split
    would be empty, and every epoch's validation 0 / 0 (it was a ZeroDivisionError then)."""
    from builders import one_line_failure
    from utils.data.errors import DataError
    with pytest.raises(DataError, match="holds out no image"):
        held_out_split(torch.arange(5), 0.2)
    one_each = make_image_folder(str(tmp_path / "d"), splits=(("train", 1), ("test", 1)))
    code, line = one_line_failure(cifar.main, TINY_MODEL + tiny_run(seed=1) + [
        "--data", one_each, "--val-split", "0.1", "--epochs", "1", "-c", str(tmp_path / "r")],
        capsys)
    assert code == 1 and "--val-split 0.1 holds out no image" in line


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_cifar_pickles(str(tmp_path_factory.mktemp("split") / "d"), n_train=40, n_test=6)


def test_the_held_out_images_never_train_and_do_not_move_with_the_seed(data):
    train_set, test_set = load_dataset(data, "cifar10", download=False)
    held = []
    for seed in (1, 2):
        settings = read_settings(cifar_flags(), ["--data", data, "--val-split", "0.25",
                                                 "--manualSeed", str(seed)]).settings
        loaders = cifar_loaders(train_set, test_set, settings.data, torch.device("cpu"), seed,
                                False)
        held.append(loaders.test.images)
        trained = {tuple(x.flatten().tolist()) for x in loaders.train.images}
        assert all(tuple(x.flatten().tolist()) not in trained for x in loaders.test.images)
        assert len(loaders.train.images) + len(loaders.test.images) == len(train_set)
        assert torch.equal(loaders.final.images, test_set.images)
    assert torch.equal(held[0], held[1])


def scores_of(run, data):
    """(held-out split, test split) Scores of a run's last checkpoint, evaluated here."""
    from utils.session.build import build_model
    from utils.train.checkpoint import load_weights
    from utils.train.engine import evaluate
    settings = read_settings(cifar_flags(), ["--resume", run, "--data", data, "-e"]).settings
    model = build_model(cifar.models.cifar.MODELS, settings.model, 10)
    load_weights(model, os.path.join(run, "checkpoint.pth.tar"))
    train_set, test_set = load_dataset(data, "cifar10", download=False)
    loaders = cifar_loaders(train_set, test_set, settings.data, torch.device("cpu"),
                            settings.seed, False)
    criterion = torch.nn.CrossEntropyLoss()
    return (evaluate(model, loaders.test, criterion, show_progress=False),
            evaluate(model, loaders.final, criterion, show_progress=False))


def test_a_run_chooses_on_the_held_out_split_and_scores_the_test_split_once(data, tmp_path,
                                                                           capsys):
    run = str(tmp_path / "run")
    argv = TINY_MODEL + tiny_run(seed=4, train_batch=8) + ["--data", data, "-c", run,
                                                          "--val-split", "0.2", "--epochs", "2"]
    cifar.main(argv)
    out = capsys.readouterr().out
    assert "--val-split 0.2: 10 training images held out" in out and "the 6 test images" in out
    assert out.count("The test split, scored once") == 1
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    valid = [row[4] for row in rows]
    assert all(round(v / 10, 6).is_integer() for v in valid)  # 10 held out: 1 of each class
    with open(os.path.join(run, "run.json")) as f:
        record = json.load(f)
    test = record["result"]["test"]
    assert set(test) == {"final", "best"} and record["recorded"]["val_split"] == 0.2
    assert all(round(s["top1"] * 6 / 100, 4).is_integer() for s in test.values())  # 6 images
    best = torch.load(os.path.join(run, "model_best.pth.tar"), weights_only=True)
    assert best["acc"] == max(valid) == record["result"]["best_acc"]
    # The log's Valid Acc. is the held-out split's, the result's test the test split's.
    held_out, test_split = scores_of(run, data)
    assert held_out.top1 == pytest.approx(valid[-1])
    assert test_split.top1 == pytest.approx(test["final"]["top1"])
    # A resume keeps the split (a recorded flag) and scores the test split at its own end.
    cifar.main(["--resume", run, "--epochs", "3", "--data", data, "--no-progress"])
    assert "--val-split 0.2: 10 training images held out" in capsys.readouterr().out
    with open(os.path.join(run, "run.json")) as f:
        assert set(json.load(f)["result"]["test"]) == {"final", "best"}
    summarize.main(["--group", f"split={run}", "-o", str(tmp_path / "s.png")])
    assert "test (final) mean +- std" in capsys.readouterr().out
    # Beside a run without --val-split the test columns stay, and a mixed group says so.
    plain = str(tmp_path / "plain")
    cifar.main(TINY_MODEL + tiny_run(seed=4, train_batch=8) + ["--data", data, "-c", plain,
                                                              "--epochs", "1"])
    capsys.readouterr()
    summarize.main(["--group", f"split={run}", "--group", f"plain={plain}", "-o",
                    str(tmp_path / "s2.png")])
    out = capsys.readouterr().out
    assert "test (final) mean +- std" in out
    plain_row = next(line for line in out.splitlines() if line.startswith("plain"))
    assert plain_row.split()[-2:] == ["-", "-"]
    summarize.main(["--group", f"mixed={tmp_path}/[pr]*", "-o", str(tmp_path / "s3.png")])
    assert "mixes 1 run(s) with --val-split" in capsys.readouterr().out


def test_a_resume_cannot_change_the_split(data, tmp_path, capsys):
    run = str(tmp_path / "run")
    cifar.main(TINY_MODEL + tiny_run(seed=4, train_batch=8) + [
        "--data", data, "-c", run, "--val-split", "0.2", "--epochs", "1"])
    from builders import one_line_failure
    code, line = one_line_failure(cifar.main, ["--resume", run, "--epochs", "2", "--data", data,
                                               "--val-split", "0.3"], capsys)
    assert code == 2 and "--val-split 0.3: the checkpoint was trained with --val-split 0.2" in line


@pytest.mark.parametrize("decode", ["cpu", "pil"])
def test_imagenet_py_holds_out_a_share_of_train_and_scores_val_once(tmp_path, capsys, decode):
    import imagenet
    from builders import make_image_folder
    tree = make_image_folder(str(tmp_path / "data"), splits=(("train", 4), ("val", 2)),
                             size=(40, 30), ext="jpg")
    run = str(tmp_path / "run")
    imagenet.main(["-a", "shufflenet_v2_x0_5", "--data", tree, "-j", "0", "--no-progress",
                   "--epochs", "1", "--train-batch", "3", "--test-batch", "3", "--decode",
                   decode, "--val-split", "0.25", "-c", run])
    out = capsys.readouterr().out
    assert "--val-split 0.25: 3 training images held out" in out and "the 6 test images" in out
    with open(os.path.join(run, "run.json")) as f:
        assert "final" in json.load(f)["result"]["test"]
