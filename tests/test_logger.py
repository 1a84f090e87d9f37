"""log.txt in the reference's format, resume that never duplicates rows, and plot.py."""
import os

import plot
from utils.records.logger import Logger, read_log, save_curves


def test_format_resume_and_cut(tmp_path):
    path = str(tmp_path / "log.txt")
    log = Logger(path)
    log.set_names(["A", "B"])
    for i in range(3):
        log.append([i, i / 3])
    log.close()
    with open(path) as f:
        assert f.read() == "A\tB\t\n0.000000\t0.000000\t\n1.000000\t0.333333\t\n" \
                           "2.000000\t0.666667\t\n"
    log = Logger(path, resume=True, keep_rows=2)  # the checkpoint had 2 epochs
    log.set_names(["A", "B"])
    log.append([9, 9])
    log.close()
    names, numbers = read_log(path)
    assert names == ["A", "B"] and numbers["A"] == [0, 1, 9]


def test_plot_compares_logs(tmp_path, capsys):
    runs = []
    for name, acc in (("bn", [10, 20]), ("gnws", [12, 25])):
        os.makedirs(tmp_path / name)
        log = Logger(str(tmp_path / name / "log.txt"))
        log.set_names(["Valid Acc.", "Train Loss"])
        for a in acc:
            log.append([a, 1.0])
        log.close()
        runs.append(str(tmp_path / name))
    out = str(tmp_path / "cmp.png")
    assert plot.main(runs + ["-o", out, "--names", "Valid Acc.", "Train Loss"]) == 0
    assert os.path.getsize(out) > 1000
    assert plot.main(runs + ["-o", out, "--names", "Nope"]) == 1
    assert "no column 'Nope'" in capsys.readouterr().err


def test_confusion_counts_and_class_report(tmp_path):
    import torch

    from utils.eval import confusion_counts
    from utils.records.report import write_class_report
    output = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0]])
    target = torch.tensor([0, 1, 1, 2])
    counts = confusion_counts(output, target, 3)
    assert counts.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    text, picture = write_class_report(counts, ["cat", "dog", "emu"], str(tmp_path))
    with open(text) as f:
        rows = [line.split("\t") for line in f.read().splitlines()]
    assert [r[0].strip() for r in rows[1:]] == ["cat", "dog", "emu"]
    assert [r[3] for r in rows[1:]] == ["100.00", "50.00", "100.00"]
    assert os.path.getsize(picture) > 0


def test_plot_reads_a_read_only_log_without_opening_it_for_writing(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    log = Logger(str(run / "log.txt"))
    log.set_names(["Valid Acc."])
    log.append([50.0])
    log.close()
    os.chmod(run / "log.txt", 0o444)
    before = (run / "log.txt").stat().st_mtime_ns
    real_open = open

    def no_writing(path, mode="r", *args, **kwargs):
        assert not (str(path).endswith("log.txt") and set(mode) & set("wa+")), mode
        return real_open(path, mode, *args, **kwargs)

    import builtins
    builtins.open = no_writing
    try:
        assert plot.main([str(run), "-o", str(tmp_path / "c.png")]) == 0
        save_curves(str(run / "log.txt"))
    finally:
        builtins.open = real_open
    assert (run / "log.txt").stat().st_mtime_ns == before
    assert os.path.getsize(run / "log.png") > 0
