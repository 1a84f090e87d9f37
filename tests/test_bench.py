"""bench.py runs and prints its fields (no timing assertions: machines are noisy)."""
import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

from benchmarks.cli import main as bench_main
from benchmarks.fixtures import synthetic_imagenet
from builders import REPO, help_of_each_option


def test_model_bench_prints_throughput_and_ratios(capsys):
    bench_main(["step", "-a", "l_resnet", "--depth", "8", "--batch", "4", "--device", "cpu",
                "--amp", "bf16", "--warmup", "1", "--windows", "2", "--steps", "1"])
    out = capsys.readouterr().out
    assert re.search(r"l_resnet-8 amp=bf16 .* img/s best .* img/s median", out)
    assert "l_resnet-8 amp=none channels_last=False compile=none" in out  # reference style
    assert re.search(r"^resnet-8 amp=bf16", out, re.M)  # the BN twin, of the same depth
    assert len(re.findall(r"^ratio: ", out, re.M)) == 2


@pytest.mark.parametrize("flags", [["-a", "l_resnet", "--depth", "8"], ["-a", "l_resnet50"],
                                   ["-a", "resnet", "--depth", "8", "--norm", "bcn", "--ws"]])
def test_the_batch_norm_twin_is_built_with_batch_norm_and_plain_convs(flags):
    """Parsing writes an l_* name's own pair (gn, ws) into its options: the twin must set the
    pair, not only rename the architecture (it was built as GN+WS again)."""
    import torch.nn as nn
    from benchmarks.step import bn_twin, model_settings
    from models.layers import WSConv2d
    from utils.session.build import build_model
    archs, settings, _ = model_settings(flags)
    twin = build_model(archs, bn_twin(archs, settings), 10)
    kinds = {type(m) for m in twin.modules()}
    assert nn.BatchNorm2d in kinds and nn.GroupNorm not in kinds and WSConv2d not in kinds


def test_ops_bench_counts_a_step_beside_the_batch_norm_network(capsys):
    """The twin is the same network with BatchNorm and plain convs: -a NAME --norm X --ws
    against -a NAME, l_NAME against NAME; counts are of the step's micro-batches."""
    bench_main(["ops", "-a", "resnet", "--depth", "8", "--norm", "bcn", "--ws", "--ghost-batch",
                "2", "--batch", "4", "--top", "3"])
    out = capsys.readouterr().out
    counts = [int(n) for n in re.findall(r"^\S.*: (\d+) ops$", out, re.M)]
    assert re.search(r"^resnet-8 norm=bcn ws ghost-batch=2: \d+ ops$", out, re.M)
    assert re.search(r"^resnet-8: \d+ ops$", out, re.M)
    assert len(counts) == 2 and counts[0] > counts[1] > 0
    assert re.search(rf"ratio: .* launches {counts[0] / counts[1]:.2f}x the ops of resnet-8", out)
    assert len(re.findall(r"^    top: ", out, re.M)) == 2
    bench_main(["ops", "-a", "l_resnet", "--depth", "8", "--batch", "2", "--iter-size", "3",
                "--no-twin"])
    out = capsys.readouterr().out
    assert "3 micro-batches of 2 images" in out and "ratio" not in out
    steps = int(re.search(r"l_resnet-8: (\d+) ops", out).group(1))
    bench_main(["ops", "-a", "l_resnet", "--depth", "8", "--batch", "2", "--no-twin"])
    assert steps > int(re.search(r"l_resnet-8: (\d+) ops", capsys.readouterr().out).group(1))


def test_pipeline_bench_prints_delivered_rate(capsys):
    bench_main(["pipeline", "cifar", "--device", "cpu", "--images", "256", "--batch", "64",
                "--windows", "2"])
    out = capsys.readouterr().out
    assert re.search(r"DeviceLoader CIFAR 256 images, policy none: \d+ img/s best", out)
    assert "policy --" not in out


def test_pipeline_bench_times_each_policy_against_none(capsys):
    bench_main(["pipeline", "cifar", "--device", "cpu", "--images", "64", "--batch", "32",
                "--windows", "1", "--policies"])
    out = capsys.readouterr().out
    for policy in ("--autoaugment cifar10", "--randaugment 2 9", "--trivialaugment"):
        assert re.search(rf"policy {policy}: \d+ img/s best, \d+ img/s median delivered to cpu; "
                         rf"[\d.]+x the rate without", out), policy


def test_imagenet_pipeline_bench_times_every_path_beside_the_reference(capsys, tmp_path,
                                                                      monkeypatch):
    from builders import make_image_folder
    root = make_image_folder(str(tmp_path / "data"), splits=(("train", 4), ("val", 2)),
                             size=(64, 48), ext="jpg")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    bench_main(["pipeline", "imagenet", "--data", root, "--device-decode", "--device", "cpu",
                "--batch", "4", "--workers", "0", "--windows", "1"])
    out = capsys.readouterr().out
    names = {"reference", "default", "pil", "device", "decode", "reference-val", "default-val",
             "pil-val", "device-val"}
    for suffix in ("", " (alone)"):  # together in this process, then each in its own
        rates = dict(re.findall(rf"^(\S+){re.escape(suffix)}: ([\d.]+) img/s median$", out,
                                re.MULTILINE))
        assert set(rates) == names and all(float(rate) > 0 for rate in rates.values())
    rows = [line for line in out.splitlines() if re.match(r"reference +[\d.]+ ", line)]
    assert len(rows) == 2  # the reference vs itself, in both tables
    assert all(row.split()[3] == "1.00x" and row.split()[6] == "1.00x" for row in rows)
    assert os.listdir(scratch) == []  # its scratch folder is gone


def test_a_contender_alone_is_timed_in_a_process_of_its_own(tmp_path):
    """benchmarks.alone, as the benchmark starts it: one JSON line, seconds per image of a
    timed pass of train and of val (the decode-only limit: train only)."""
    from builders import make_image_folder
    root = make_image_folder(str(tmp_path / "data"), splits=(("train", 4), ("val", 2)),
                             size=(64, 48), ext="jpg")
    for name, splits in (("reference", {"train", "val"}), ("decode", {"train"})):
        done = subprocess.run([sys.executable, "-m", "benchmarks.alone", root, name, "--batch",
                               "2", "--workers", "1", "--device", "cpu"], cwd=REPO,
                              capture_output=True, text=True, check=True)
        seconds = json.loads(done.stdout.strip().splitlines()[-1])
        assert set(seconds) == splits and all(t > 0 for t in seconds.values())


def test_imagenet_pipeline_bench_makes_its_jpegs_from_real_cifar(capsys, cifar_npz, tmp_path):
    folder = synthetic_imagenet(cifar_npz, str(tmp_path / "jpegs"), 8)
    from PIL import Image
    files = [os.path.join(d, f) for d, _, names in os.walk(os.path.join(folder, "train"))
             for f in names]
    assert len(files) == 8 and Image.open(files[0]).size == (500, 375)
    bench_main(["pipeline", "imagenet", "--npz", cifar_npz, "--images", "8", "--device", "cpu",
                "--batch", "4", "--workers", "0", "--windows", "1", "--no-alone"])
    assert re.search(r"^default: [\d.]+ img/s median$", capsys.readouterr().out, re.MULTILINE)


def test_overhead_bench_prints_each_round_and_the_ratio_of_minima(capsys, cifar_npz):
    bench_main(["overhead", "--npz", cifar_npz, "--train", "256", "--test", "64", "--epochs",
                "1", "--batch", "64", "--windows", "1", "--steps", "1", "--warmup", "1",
                "--repeats", "2"])
    out = capsys.readouterr().out
    rounds = re.findall(r"^round \d: import torch\+torchvision [\d.]+ s; bare step \(batch 64\) "
                        r"[\d.]+ ms; .* cifar.py ([\d.]+) s; .* ratio [\d.]+$", out, re.M)
    assert len(rounds) == 2
    final = re.search(r"minima of 2 rounds: cifar.py ([\d.]+) s; .* ratio [\d.]+ "
                      r"\(target <= 1.10\)", out)
    assert float(final.group(1)) == min(float(r) for r in rounds)


def test_fold_bench_prints_both_forwards_and_their_ratio(capsys):
    bench_main(["fold", "-a", "l_resnet", "--depth", "8", "--batch", "4", "--device", "cpu",
                "--warmup", "1", "--windows", "2", "--steps", "1"])
    out = capsys.readouterr().out
    assert re.search(r"l_resnet with WS +[\d.]+ img/s best", out)
    assert re.search(r"l_resnet with WS folded +[\d.]+ img/s best", out)
    assert re.search(r"^ratio: folded is [\d.]+x the speed of WS", out, re.M)


@pytest.mark.parametrize("command", ["step", "pipeline", "overhead", "fold"])
def test_every_bench_option_shows_its_default(command, capsys):
    with pytest.raises(SystemExit):
        bench_main([command, "--help"])
    options = help_of_each_option(capsys.readouterr().out)
    assert len(options) > 3
    for option, text in options.items():
        if option != "-h":
            assert "(default: " in text, (command, option, text)


@pytest.mark.parametrize("argv, message", [
    (["pipeline", "cifar", "--npz", "x.npz"], "--npz does not apply to pipeline cifar, which "
                                              "times random images"),
    (["pipeline", "imagenet", "--data", "d", "--npz", "x.npz"],
     "--npz does not apply to pipeline imagenet with --data"),
    (["pipeline", "cifar", "--no-alone"], "--no-alone does not apply to pipeline cifar"),
], ids=["cifar", "imagenet-data", "no-alone-cifar"])
def test_bench_refuses_a_flag_it_would_not_read(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        bench_main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


class MakesFile:
    """A pickle payload that would create ``code-ran`` beside the archive if unpickled."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def write_npz_like(path, kind):
    import pickle

    import numpy as np
    if kind == "missing":
        return path
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"train_jpeg": MakesFile(str(path.parent / "code-ran"))}))
    elif kind == "keys":
        np.savez(path, train_jpeg=np.zeros(3, np.uint8))
    elif kind == "objects":
        np.savez(path, train_jpeg=np.array([b"a", MakesFile(str(path.parent / "code-ran"))],
                                           dtype=object),
                 train_offsets=np.zeros(2), train_labels=np.zeros(1), classes=np.array(["a"]))
    elif kind == "npy":
        np.save(path, np.zeros(3))
        os.replace(str(path) + ".npy", path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("missing", "needs the CIFAR-10 JPEG archive"),
    ("pickle", "it is a pickle, which is never unpickled here (it could run code)"),
    ("keys", "is not the CIFAR-10 JPEG archive (arrays train_jpeg, train_offsets, train_labels, "
             "classes): "),
    ("objects", "it holds arrays of Python objects, which are never unpickled here"),
    ("npy", "it is one NumPy array (.npy), not named arrays"),
])
def test_a_missing_or_malformed_archive_is_one_line(tmp_path, kind, message):
    """... and one that would run code (a pickle posing as the archive, a .npz of objects)
    runs none: the file its payload would make is never made, and numpy's advice to pass
    allow_pickle=True is not repeated."""
    import subprocess
    import sys
    npz = write_npz_like(tmp_path / "a.npz", kind)
    done = subprocess.run([sys.executable, "bench.py", "pipeline", "imagenet", "--npz", str(npz),
                           "--images", "4", "--workers", "0", "--windows", "1"],
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "allow_pickle" not in done.stderr and not (tmp_path / "code-ran").exists()


def model_flag_examples():
    """(script, -a ARCH and the model flags of test_table's example) for every model flag of
    each script, where the example's architecture is that script's (bench.py reads an
    architecture with the flags of the script that builds it)."""
    from test_table import EXAMPLES, SCRIPTS, settings_of
    for script, (make, _) in SCRIPTS.items():
        flags = make()
        default = settings_of(script, []).model.arch
        for name, flag in flags.flags.items():
            companions, written = EXAMPLES[name]
            argv = companions + written
            argv = argv if "-a" in argv else ["-a", default] + argv
            if flag.group == "model" and argv[argv.index("-a") + 1] in flags.archs:
                yield script, argv


@pytest.mark.parametrize("script, flags", list(model_flag_examples()),
                         ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_bench_reads_every_model_flag_as_training_does(script, flags):
    """bench.py step's model is training's: each model flag lands in the same ModelSettings, or
    is refused as training refuses it; none is accepted and ignored."""
    from benchmarks.step import model_settings
    from test_table import settings_of
    from utils.settings.flag import UsageError
    try:
        trained = settings_of(script, flags).model
    except UsageError as refusal:
        with pytest.raises(UsageError, match=re.escape(str(refusal)[:40])):
            model_settings(flags)
        return
    assert model_settings(flags).model == trained


def test_bench_step_applies_ghost_batch_and_refuses_sync_bn_on_the_cpu(capsys):
    from utils.settings.flag import UsageError
    bench_main(["step", "-a", "resnet", "--depth", "8", "--ghost-batch", "2", "--batch", "4",
                "--device", "cpu", "--warmup", "0", "--windows", "1", "--steps", "1",
                "--no-twin"])
    out = capsys.readouterr().out
    assert re.search(r"^ratio: resnet-8 ghost-batch=2 .* the speed of resnet-8 amp=none", out,
                     re.M), out
    with pytest.raises(UsageError, match="--sync-bn needs CUDA GPUs under torchrun"):
        bench_main(["step", "-a", "resnet", "--depth", "8", "--sync-bn", "--batch", "4",
                    "--device", "cpu", "--warmup", "0", "--windows", "1", "--steps", "1"])
