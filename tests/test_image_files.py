"""ImageNet's own layout (utils/data/image_files.py): train/<wnid>/* with a flat val/ of images
and the LOC_val_solution.csv label file; labels matched by wnid; each bad case one line."""
import os

import pytest

import imagenet
from builders import make_image_folder, one_line_failure
from utils.data.errors import DataError
from utils.data.image_files import ImageFiles, val_files

WNIDS = ("n01440764", "n01443537", "n01484850")


def flat_imagenet(root, rows=None, extra_image=None):
    """train/<wnid>/ folders, and val/ flattened: its images renamed ILSVRC2012_val_0000000N
    and listed in LOC_val_solution.csv (``rows`` replaces the file's rows)."""
    make_image_folder(root, splits=(("train", 3), ("val", 2)), classes=WNIDS, size=(40, 30),
                      ext="jpg")
    val = os.path.join(root, "val")
    truth, n = [], 0
    for wnid in WNIDS:
        for name in sorted(os.listdir(os.path.join(val, wnid))):
            n += 1
            image_id = f"ILSVRC2012_val_{n:08d}"
            os.rename(os.path.join(val, wnid, name), os.path.join(val, image_id + ".JPEG"))
            truth.append((image_id, wnid))
        os.rmdir(os.path.join(val, wnid))
    if extra_image:
        open(os.path.join(val, extra_image), "wb").write(
            open(os.path.join(val, truth[0][0] + ".JPEG"), "rb").read())
    lines = rows if rows is not None else [
        f"{image_id},{wnid} 10 20 30 40 {wnid} 1 2 3 4" for image_id, wnid in truth]
    with open(os.path.join(root, "LOC_val_solution.csv"), "w") as f:
        f.write("ImageId,PredictionString\n" + "\n".join(lines) + "\n")
    return root, truth


def test_a_flat_val_is_labelled_by_wnid_from_the_label_file(tmp_path):
    root, truth = flat_imagenet(str(tmp_path / "imagenet"))
    classes = ImageFiles(os.path.join(root, "train")).classes
    files = val_files(root, classes)
    got = {os.path.splitext(os.path.basename(p))[0]: classes[label] for p, label in files.samples}
    assert got == dict(truth) and len(files) == 6


def test_imagenet_py_trains_and_evaluates_on_the_official_layout(tmp_path, capsys):
    root, _ = flat_imagenet(str(tmp_path / "imagenet"))
    run = str(tmp_path / "run")
    imagenet.main(["-a", "shufflenet_v2_x0_5", "--data", root, "-j", "0", "--no-progress",
                   "--epochs", "1", "--train-batch", "3", "--test-batch", "3", "-c", run])
    imagenet.main(["-e", "--resume", run, "--data", root, "-j", "0", "--no-progress"])
    with open(os.path.join(run, "per_class_accuracy.txt")) as f:
        report = f.read()
    assert all(wnid in report for wnid in WNIDS)


def test_a_label_file_saved_with_a_bom_is_read(tmp_path):
    """Spreadsheets save CSV with a UTF-8 byte order mark before the header."""
    root, truth = flat_imagenet(str(tmp_path / "imagenet"))
    path = os.path.join(root, "LOC_val_solution.csv")
    text = open(path, encoding="utf-8").read()
    with open(path, "w", encoding="utf-8-sig") as f:
        f.write(text)
    assert open(path, "rb").read(3) == b"\xef\xbb\xbf"
    assert len(val_files(root, list(WNIDS))) == len(truth)


@pytest.mark.parametrize("case, message", [
    ("unlabelled", "ILSVRC2012_val_99999999.JPEG has no label in the label file"),
    ("unknown class", "labels ILSVRC2012_val_00000001 n09999999, which is no class of train/"),
    ("missing image", "the label file names 1 image(s)"),
    ("bad header", "does not start with ImageId,PredictionString"),
    ("bad row", "line 3: not ImageId,PredictionString"),
    ("no label file", "its labels are needed in"),
    ("relabelled", "ILSVRC2012_val_00000001 again, labelled n01443537; an earlier line labels "
                   "it n01440764"),
])
def test_each_bad_label_file_is_one_line(tmp_path, capsys, case, message):
    root = str(tmp_path / "imagenet")
    if case == "unlabelled":
        flat_imagenet(root, extra_image="ILSVRC2012_val_99999999.JPEG")
    else:
        root, truth = flat_imagenet(root)
        rows = [f"{i},{w} 1 2 3 4" for i, w in truth]
        path = os.path.join(root, "LOC_val_solution.csv")
        if case == "unknown class":
            rows[0] = f"{truth[0][0]},n09999999 1 2 3 4"
        elif case == "missing image":
            rows.append("ILSVRC2012_val_00000077,n01440764 1 2 3 4")
        elif case == "bad row":
            rows[1] = "just-an-id"
        elif case == "relabelled":  # a duplicate ImageId with another label, later in the file
            rows.append(f"{truth[0][0]},n01443537 1 2 3 4")
        if case == "no label file":
            os.remove(path)
        else:
            with open(path, "w") as f:
                f.write(("Id,Labels\n" if case == "bad header" else "ImageId,PredictionString\n")
                        + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        val_files(root, list(WNIDS))
    code, line = one_line_failure(imagenet.main, ["-a", "shufflenet_v2_x0_5", "--data", root,
                                                  "-j", "0", "-c", str(tmp_path / "r")], capsys)
    assert code == 1 and message in line
