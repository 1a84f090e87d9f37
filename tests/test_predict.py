"""predict.py: a trained run (or its .pt2) on image files, through the run's own evaluation
input; top-k by class name with probabilities; text, JSON and CSV; a broken file named on
stderr while the others are predicted; old checkpoints print class indices."""
import csv
import io
import json
import os
import subprocess
import sys

import pytest
import torch

import export
import imagenet
import predict
from builders import REPO, folder_run, make_image_folder, one_line_failure

CLASSES = ["ant", "bee", "cat"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    folder, _ = folder_run(root, CLASSES)
    photos = make_image_folder(str(root / "photos"), splits=(("x", 2),), classes=("p",),
                               size=(50, 40), ext="jpg", seed=3)
    return folder, sorted(os.path.join(photos, "x", "p", f) for f in
                          os.listdir(os.path.join(photos, "x", "p")))


def predicted(argv, capsys):
    assert predict.main(argv) == 0
    return capsys.readouterr()


def test_each_image_gets_its_top_k_classes_by_name(run, capsys):
    folder, photos = run
    out = predicted(["--resume", folder, "--topk", "3"] + photos, capsys).out
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, photos):
        assert line.startswith(path + ": ")
        top = [item.rsplit(" ", 1) for item in line.split(": ", 1)[1].split(", ")]
        assert len(top) == 3
        names = torch.load(os.path.join(folder, "checkpoint.pth.tar"),
                           weights_only=True)["classes"]
        assert all(name in names for name, _ in top)
        probabilities = [float(p) for _, p in top]
        assert probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1 + 1e-4


def test_json_and_csv_say_the_same(run, capsys):
    folder, photos = run
    as_json = json.loads(predicted(["--resume", folder, "--format", "json", "--topk", "2"]
                                   + photos, capsys).out)
    rows = list(csv.DictReader(io.StringIO(predicted(
        ["--resume", folder, "--format", "csv", "--topk", "2"] + photos, capsys).out)))
    assert [item["path"] for item in as_json] == photos
    assert len(rows) == 4 and rows[0]["rank"] == "1"
    for item in as_json:
        assert sum(p for _, p in item["top"]) <= 1 + 1e-6
        first = next(r for r in rows if r["path"] == item["path"] and r["rank"] == "1")
        assert first["class"] == item["top"][0][0]
        assert float(first["probability"]) == pytest.approx(item["top"][0][1], abs=1e-6)


def test_a_broken_file_is_named_and_the_others_are_still_predicted(run, tmp_path):
    folder, photos = run
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    result = subprocess.run([sys.executable, os.path.join(REPO, "predict.py"), "--resume",
                             folder, photos[0], str(broken), photos[1]], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if "error" in line] == [
        line for line in result.stderr.splitlines() if str(broken) in line]
    assert len(result.stdout.strip().splitlines()) == 2


def test_an_exported_program_predicts_as_its_run_does(run, tmp_path, capsys):
    folder, photos = run
    path = str(tmp_path / "m.pt2")
    assert export.main(["--resume", folder, "-o", path]) == 0
    capsys.readouterr()
    from_run = json.loads(predicted(["--resume", folder, "--format", "json"] + photos,
                                    capsys).out)
    from_program = json.loads(predicted(["--model", path, "--format", "json"] + photos,
                                        capsys).out)
    for a, b in zip(from_run, from_program):
        assert [name for name, _ in a["top"]] == [name for name, _ in b["top"]]
        assert [p for _, p in a["top"]] == pytest.approx([p for _, p in b["top"]], abs=1e-4)


def test_a_checkpoint_from_before_class_names_prints_indices(run, tmp_path, capsys):
    folder, photos = run
    saved = torch.load(os.path.join(folder, "checkpoint.pth.tar"), weights_only=True)
    del saved["classes"]
    old = str(tmp_path / "old.pth.tar")
    torch.save(saved, old)
    result = predicted(["--resume", old, "--topk", "2", photos[0]], capsys)
    assert "classes are unknown, printing their indices" in result.err
    names = [item.rsplit(" ", 1)[0] for item in result.out.split(": ", 1)[1].split(", ")]
    assert all(name.isdigit() for name in names)


def test_a_64_px_imagenet_run_predicts_at_64_px(tmp_path, capsys):
    from utils.session.trained import load_trained
    tree = make_image_folder(str(tmp_path / "data"), splits=(("train", 2), ("val", 1)),
                             size=(90, 70), ext="jpg")
    folder = str(tmp_path / "run")
    imagenet.main(["-a", "shufflenet_v2_x0_5", "--data", tree, "-j", "0", "--no-progress",
                   "--epochs", "1", "--train-batch", "3", "--test-batch", "3", "-c", folder,
                   "--train-crop-size", "64", "--val-resize-size", "72", "--val-crop-size",
                   "64"])
    contract = load_trained(folder).contract
    image = os.path.join(tree, "val", "a", "0.jpg")
    assert (contract.size, contract.resize) == (64, 72)
    assert predict.view(image, contract).shape == (3, 64, 64)
    capsys.readouterr()
    assert predicted(["--resume", folder, image], capsys).out.startswith(image + ": ")


def test_a_class_named_like_a_formula_is_text_in_csv(run, tmp_path, capsys):
    """OWASP's CSV injection: a cell starting with = + - @, a tab or a carriage return is a
    formula to a spreadsheet, whatever the quoting; it gets a leading quote."""
    folder, photos = run
    saved = torch.load(os.path.join(folder, "checkpoint.pth.tar"), weights_only=True)
    formulas = ['=HYPERLINK("http://x","y")', "+1", "@SUM(A1)"]  # the run's 3 classes
    saved["classes"] = formulas
    hostile = str(tmp_path / "hostile.pth.tar")
    torch.save(saved, hostile)
    rows = list(csv.DictReader(io.StringIO(predicted(
        ["--resume", hostile, "--format", "csv", "--topk", "99", photos[0]], capsys).out)))
    shown = {row["class"] for row in rows}
    assert {"'" + name for name in formulas} <= shown
    assert not [name for name in shown if name.startswith(predict.FORMULA_STARTS)]
    assert [predict.csv_cell(t) for t in ("-3", "\tx", "\rx", "cat")] == [
        "'-3", "'\tx", "'\rx", "cat"]


def test_an_imagenet_alexnet_run_is_rebuilt_as_imagenet_py_built_it(tmp_path, capsys):
    """Both scripts have an alexnet (and vggs), different networks: export.py and predict.py
    rebuild a run with the parser of the script its record names, not by the name alone."""
    tree = make_image_folder(str(tmp_path / "data"), splits=(("train", 2), ("val", 1)),
                             size=(90, 70), ext="jpg")
    folder = str(tmp_path / "run")
    imagenet.main(["-a", "alexnet", "--data", tree, "-j", "0", "--no-progress", "--epochs", "1",
                   "--train-batch", "3", "--test-batch", "3", "-c", folder,
                   "--train-crop-size", "64", "--val-resize-size", "72", "--val-crop-size",
                   "64"])
    exported = str(tmp_path / "alexnet.pt2")
    assert export.main(["--resume", folder, "-o", exported]) == 0
    image = os.path.join(tree, "val", "a", "0.jpg")
    capsys.readouterr()
    from_run = predicted(["--resume", folder, "--format", "json", image], capsys).out
    from_export = predicted(["--model", exported, "--format", "json", image], capsys).out
    (a,), (b,) = json.loads(from_run), json.loads(from_export)
    assert [name for name, _ in a["top"]] == [name for name, _ in b["top"]]
    assert [p for _, p in a["top"]] == pytest.approx([p for _, p in b["top"]], abs=1e-4)


def rewritten_metadata(path, to, change):
    """A copy of the export ``path`` at ``to`` with its metadata.json changed by ``change``."""
    import zipfile
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(to, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("extra/metadata.json"):
                metadata = json.loads(data)
                change(metadata)
                data = json.dumps(metadata).encode()
            target.writestr(info, data)
    return str(to)


@pytest.mark.parametrize("change,words", [
    (lambda m: m.update(classes=m["classes"][:2]), "outputs for 2 class names"),
    (lambda m: m.update(std=[0.2, 0.0, 0.2]), "which must be positive"),
    (lambda m: m.update(mean=[0.5, 0.5]), "3 numbers each"),
    (lambda m: m.update(input=[3, 0, 0]), "sides of 1 to"),
    (lambda m: m.update(interpolation="lanczos"), "names the filter 'lanczos'"),
])
def test_tampered_export_metadata_is_one_line_not_a_wrong_answer(run, tmp_path, capsys, change,
                                                                   words):
    folder, photos = run
    good = str(tmp_path / "m.pt2")
    assert export.main(["--resume", folder, "-o", good]) == 0
    bad = rewritten_metadata(good, tmp_path / "bad.pt2", change)
    capsys.readouterr()
    code, line = one_line_failure(predict.main, ["--model", bad, photos[0]], capsys)
    assert code == 1 and words in line, line


def test_nan_weights_are_refused_not_printed_as_nan_probabilities(run, tmp_path, capsys):
    folder, photos = run
    saved = torch.load(os.path.join(folder, "checkpoint.pth.tar"), weights_only=True)
    saved["state_dict"] = {k: v.float().fill_(float("nan")) if v.is_floating_point() else v
                           for k, v in saved["state_dict"].items()}
    path = str(tmp_path / "nan.pth.tar")
    torch.save(saved, path)
    code, line = one_line_failure(predict.main, ["--resume", path, "--format", "json",
                                                 photos[0]], capsys)
    assert code == 1 and "outputs are not finite" in line


def test_no_image_among_the_paths_is_a_line(run, tmp_path, capsys):
    folder, _ = run
    (tmp_path / "empty").mkdir()
    code, line = one_line_failure(predict.main, ["--resume", folder, str(tmp_path / "empty")],
                                  capsys)
    assert code == 2 and "no image files in" in line


def test_the_pixel_limit_line_names_a_flag_predict_has(run, capsys):
    folder, photos = run
    assert predict.main(["--resume", folder, "--max-pixels", "100", photos[0]]) == 1
    assert "--max-pixels N raises it" in capsys.readouterr().err
    assert predicted(["--resume", folder, "--max-pixels", str(50 * 40), photos[0]], capsys).out


def test_a_closed_pipe_ends_quietly(run):
    folder, photos = run
    reader = subprocess.Popen([sys.executable, os.path.join(REPO, "predict.py"), "--resume",
                               folder] + photos * 200, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=REPO)
    reader.stdout.readline()
    reader.stdout.close()  # as `| head -1` does
    _, err = reader.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()[-2000:]


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        predict.main(["--help"])
    assert "examples:" in capsys.readouterr().out


def test_a_flag_that_cannot_act_is_refused(run, capsys):
    from builders import one_line_failure
    folder, photos = run
    code, line = one_line_failure(predict.main, ["--model", "m.pt2", "--ema", photos[0]], capsys)
    assert code == 2 and "--ema applies to --resume" in line
    code, line = one_line_failure(predict.main, ["--resume", folder, "--topk", "0", photos[0]],
                                  capsys)
    assert code == 2 and "--topk must be at least 1, got 0" in line
    code, line = one_line_failure(predict.main, ["--resume", folder, "nothing-*.jpg"], capsys)
    assert code == 2 and "nothing-*.jpg: no such file, folder or matching files" in line
