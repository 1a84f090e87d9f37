"""summarize.py: runs grouped by the flags that differ (seed aside) or by globs; the table's
numbers equal a hand computation over fabricated logs; the curves are drawn."""
import json
import os
import re
import statistics

import pytest

import summarize

# Valid Acc. per epoch of three seeds of two configurations.
RUNS = {"bn-s1": ("resnet", [50.0, 70.0, 80.0]), "bn-s2": ("resnet", [55.0, 75.0, 70.0]),
        "bn-s3": ("resnet", [52.0, 71.0, 79.0]),
        "gn-s1": ("l_resnet", [40.0, 60.0, 85.0]), "gn-s2": ("l_resnet", [45.0, 90.0, 88.0])}


def fabricate(root):
    for seed, (name, (arch, accuracies)) in enumerate(RUNS.items()):
        folder = root / name
        folder.mkdir()
        lines = ["Learning Rate\tTrain Loss\tValid Loss\tTrain Acc.\tValid Acc.\t"]
        lines += [f"0.100000\t1.000000\t1.000000\t50.000000\t{a:.6f}\t" for a in accuracies]
        (folder / "log.txt").write_text("\n".join(lines) + "\n")
        recorded = {"arch": arch, "depth": 20, "lr": 0.1, "manualSeed": seed}
        (folder / "run.json").write_text(json.dumps({"recorded": recorded}))
    return root


def rows_of(out):
    """{group: (n, final mean, final std, final median, best mean, best std, best median)}"""
    found = {}
    for line in out.splitlines()[1:]:
        m = re.match(r"(.+?)\s+(\d+)\s+([\d.]+) \+-\s+([\d.]+)\s+([\d.]+)\s+([\d.]+) \+-\s+"
                     r"([\d.]+)\s+([\d.]+)$", line)
        if m:
            found[m.group(1)] = (int(m.group(2)),) + tuple(float(v) for v in m.groups()[2:])
    return found


def expected(names):
    finals = [RUNS[n][1][-1] for n in names]
    bests = [max(RUNS[n][1]) for n in names]
    return (len(names), statistics.mean(finals), statistics.stdev(finals),
            statistics.median(finals), statistics.mean(bests), statistics.stdev(bests),
            statistics.median(bests))


def test_groups_by_differing_flags_and_the_numbers_are_right(tmp_path, capsys):
    root = fabricate(tmp_path)
    out_png = str(tmp_path / "s.png")
    assert summarize.main([str(root / n) for n in RUNS] + ["-o", out_png]) == 0
    rows = rows_of(capsys.readouterr().out)
    assert set(rows) == {"arch=resnet", "arch=l_resnet"}
    for label, names in (("arch=resnet", ["bn-s1", "bn-s2", "bn-s3"]),
                         ("arch=l_resnet", ["gn-s1", "gn-s2"])):
        assert rows[label] == pytest.approx(expected(names), abs=0.006)
    assert os.path.getsize(out_png) > 1000


def test_groups_by_globs(tmp_path, capsys):
    root = fabricate(tmp_path)
    assert summarize.main(["--group", f"BN={root}/bn-*", "--group", f"GN+WS={root}/gn-*", "-o",
                           str(tmp_path / "g.pdf")]) == 0
    rows = rows_of(capsys.readouterr().out)
    assert rows["BN"] == pytest.approx(expected(["bn-s1", "bn-s2", "bn-s3"]), abs=0.006)
    assert rows["GN+WS"][0] == 2


def test_runs_without_a_record_need_globs_and_bad_globs_are_named(tmp_path, capsys):
    root = fabricate(tmp_path)
    os.remove(root / "bn-s1" / "run.json")
    assert summarize.main([str(root / "bn-s1"), str(root / "bn-s2"), "-o",
                           str(tmp_path / "x.png")]) == 1
    assert "has no run.json to group by: name the groups with --group" in capsys.readouterr().err
    assert summarize.main(["--group", f"X={root}/nothing-*", "-o", str(tmp_path / "x.png")]) == 1
    assert "no run folder matches" in capsys.readouterr().err


def test_a_group_of_one_run_shows_no_spread(tmp_path, capsys):
    root = fabricate(tmp_path)
    assert summarize.main(["--group", f"one={root}/bn-s1", "-o", str(tmp_path / "o.png")]) == 0
    out = capsys.readouterr().out
    (line,) = [row for row in out.splitlines() if row.startswith("one")]
    assert line.split()[1:] == ["1", "80.00", "+-", "n/a", "80.00", "80.00", "+-", "n/a", "80.00"]
    assert "sample std of a single run is undefined" in out
