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
    from utils.records.class_report import write_class_report
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


# --- The pictures as drawn: labels, ticks and titles a reader needs ---------------------------

def figure_at_save(monkeypatch, module):
    """The figure ``module``'s savefig would write, caught at that moment (one per call)."""
    import matplotlib.pyplot as plt
    figures = []
    monkeypatch.setattr(module, "savefig", lambda *args, **kwargs: figures.append(plt.gcf()))
    return figures


def three_epoch_run(folder, names=("Train Loss", "Valid Loss", "Train Acc.", "Valid Acc.")):
    os.makedirs(folder)
    log = Logger(os.path.join(folder, "log.txt"))
    log.set_names(list(names))
    for epoch in range(3):
        log.append([1.0 - epoch / 10, 1.1 - epoch / 10, 40.0 + epoch, 35.0 + epoch][:len(names)])
    log.close()
    return folder


def whole_numbers(axis):
    ticks = [t for t in axis.get_xticks() if axis.get_xlim()[0] <= t <= axis.get_xlim()[1]]
    return ticks and all(float(t).is_integer() for t in ticks)


def test_plot_labels_both_axes_and_ticks_whole_epochs(tmp_path, monkeypatch):
    figures = figure_at_save(monkeypatch, plot)
    runs = [three_epoch_run(str(tmp_path / name)) for name in ("bn", "gnws")]
    assert plot.main(runs + ["-o", str(tmp_path / "c.png")]) == 0
    (axis,) = figures[0].axes
    assert axis.get_xlabel() == "Epoch" and axis.get_ylabel() == "Valid Acc. (%)"
    assert whole_numbers(axis), axis.get_xticks()
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["bn (Valid Acc.)",
                                                                      "gnws (Valid Acc.)"]
    assert axis.get_title() == "Valid Acc. (%) of 2 runs"
    assert plot.main(runs + ["-o", str(tmp_path / "l.png"), "--names", "Train Loss"]) == 0
    assert figures[1].axes[0].get_ylabel() == "Train Loss"  # no percent sign on a loss


def test_a_runs_curves_are_titled_with_its_folder_and_length(tmp_path, monkeypatch):
    import utils.records.logger as logger
    figures = figure_at_save(monkeypatch, logger)
    run = three_epoch_run(str(tmp_path / "l_resnet-20"))
    save_curves(os.path.join(run, "log.txt"))
    assert len(figures) == 2  # log.eps and log.png, of one figure
    figure = figures[0]
    assert figure.get_suptitle() == "l_resnet-20: 3 epochs"
    loss, accuracy = figure.axes
    assert (loss.get_ylabel(), accuracy.get_ylabel()) == ("Loss", "Accuracy (%)")
    assert loss.get_xlabel() == accuracy.get_xlabel() == "Epoch"
    assert whole_numbers(loss) and whole_numbers(accuracy)


def test_the_confusion_matrix_says_what_its_cells_and_colours_are(tmp_path, monkeypatch):
    import torch

    import utils.records.class_report as report
    figures = figure_at_save(monkeypatch, report)
    report.write_class_report(torch.tensor([[3, 1], [0, 2]]), ["cat", "dog"], str(tmp_path))
    image_axis, bar_axis = figures[0].axes
    title = image_axis.get_title()
    assert "images per (true, predicted) class" in title and "normalised" not in title
    assert bar_axis.get_ylabel() == "share of the true class's images"
    cells = sorted(t.get_text() for t in image_axis.texts)
    assert cells == ["1", "2", "3"]  # counts, not shares


def test_plot_help_lists_every_format_it_writes(capsys):
    from utils.records.logger import picture_formats
    try:
        plot.main(["--help"])
    except SystemExit:
        pass
    text = " ".join(capsys.readouterr().out.split())
    assert all(fmt in text for fmt in picture_formats()) and len(picture_formats()) > 3


def legend_hides_nothing(figure):
    """No point of any drawn line lies inside any legend's box (display coordinates, as the
    figure is drawn)."""
    figure.canvas.draw()
    for axis in figure.axes:
        legend = axis.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent()
        for line in axis.get_lines():
            points = axis.transData.transform(line.get_xydata())
            inside = [(x, y) for x, y in points if box.contains(x, y)]
            assert not inside, (line.get_label(), inside[:3])
    return True


def test_no_legend_covers_a_curve(tmp_path, monkeypatch):
    import summarize
    import utils.records.logger as logger
    runs = [three_epoch_run(str(tmp_path / name)) for name in ("bn", "gnws", "bcn", "gn")]
    figures = figure_at_save(monkeypatch, plot)
    assert plot.main(runs + ["-o", str(tmp_path / "c.png")]) == 0
    assert legend_hides_nothing(figures[0])
    curves = figure_at_save(monkeypatch, logger)
    save_curves(os.path.join(runs[0], "log.txt"))
    assert legend_hides_nothing(curves[0])
    summaries = figure_at_save(monkeypatch, summarize)
    groups = [f"{name}={folder}" for name, folder in zip(("BN", "GN+WS"), runs)]
    summarize.main(sum((["--group", g] for g in groups), []) + ["-o", str(tmp_path / "s.png")])
    assert legend_hides_nothing(summaries[0])
    assert summaries[0].axes[0].get_title()


def test_a_diverged_loss_goes_on_a_log_axis(tmp_path, monkeypatch):
    import utils.records.logger as logger
    folder = str(tmp_path / "diverged")
    os.makedirs(folder)
    log = Logger(os.path.join(folder, "log.txt"))
    log.set_names(["Train Loss", "Valid Loss", "Train Acc.", "Valid Acc."])
    for row in ([2.3, 2.2, 10.0, 11.0], [35000.0, 900.0, 10.0, 10.0], [1.9, 2.0, 20.0, 21.0]):
        log.append(row)
    log.close()
    figures = figure_at_save(monkeypatch, logger)
    save_curves(os.path.join(folder, "log.txt"))
    loss, accuracy = figures[0].axes
    assert loss.get_yscale() == "log" and accuracy.get_yscale() == "linear"
    calm = three_epoch_run(str(tmp_path / "calm"))
    save_curves(os.path.join(calm, "log.txt"))
    assert figures[-1].axes[0].get_yscale() == "linear"
