"""cifar.py as a user runs it: train, resume, evaluate; the outputs of the reference; equal
weights for equal effective batches; and one clear line for missing data."""
import math
import os
import re
import subprocess
import sys
import time

import pytest
import torch

import cifar
from builders import (REPO, make_cifar_pickles, make_image_folder, one_line_failure,
                      read_log_rows, tiny_run)
from utils.settings.flag import UsageError

HEADER = "Learning Rate\tTrain Loss\tValid Loss\tTrain Acc.\tValid Acc.\t"
FAST = tiny_run(seed=3)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    return make_cifar_pickles(str(tmp_path_factory.mktemp("official")), n_train=48, n_test=20)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(str(tmp_path_factory.mktemp("folder")),
                             splits=(("train", 12), ("test", 5)))


@pytest.mark.parametrize("arch", [["-a", "l_resnet", "--depth", "8"],
                                  ["-a", "resnet", "--depth", "20"]], ids=["l_resnet", "resnet"])
@pytest.mark.parametrize("layout", ["official", "folder"])
def test_train_resume_evaluate(arch, layout, request, tmp_path, capsys):
    data = request.getfixturevalue(layout)
    run = str(tmp_path / "run")
    cifar.main(arch + ["--data", data, "--epochs", "2", "-c", run] + FAST)
    # Each epoch reports its wall time and training throughput.
    times = re.findall(r"Epoch time: train \d+\.\d\d s \(([\d.]+) img/s\), test \d+\.\d\d s",
                       capsys.readouterr().out)
    assert len(times) == 2 and all(float(rate) > 0 for rate in times)
    for name in ("checkpoint.pth.tar", "model_best.pth.tar", "log.txt", "log.eps", "log.png"):
        assert os.path.getsize(os.path.join(run, name)) > 0, name
    header, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert header == HEADER and len(rows) == 2
    with open(os.path.join(run, "log.txt")) as f:
        assert re.fullmatch(r"(\d+\.\d{6}\t){5}", f.read().splitlines()[1])
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert {"epoch", "state_dict", "acc", "best_acc", "optimizer"} <= set(saved)
    assert saved["epoch"] == 2 and saved["arch"] == arch[1]
    assert not any(k.startswith("module.") for k in saved["state_dict"])

    # A third epoch from the run folder; no model flags repeated.
    cifar.main(["--data", data, "--epochs", "3", "--resume", run] + FAST)
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 3

    # -e --resume evaluates the checkpoint and reproduces the logged validation accuracy.
    capsys.readouterr()
    cifar.main(["-e", "--resume", os.path.join(run, "checkpoint.pth.tar"), "--data", data,
                "--no-progress"])
    out = capsys.readouterr().out
    acc = float(re.search(r"Test Acc:\s+([\d.]+)", out).group(1))
    assert acc == pytest.approx(rows[-1][4], abs=0.006)

    # ... and writes the accuracy of each class and the confusion matrix beside it.
    with open(os.path.join(run, "per_class_accuracy.txt")) as f:
        table = [line.split("\t") for line in f.read().splitlines()[1:]]
    assert len(table) == (3 if layout == "folder" else 10)  # an image folder's own classes
    images, correct = sum(int(r[1]) for r in table), sum(int(r[2]) for r in table)
    assert 100 * correct / images == pytest.approx(acc, abs=0.006)
    assert os.path.getsize(os.path.join(run, "confusion_matrix.png")) > 0


def final_weights(run):
    return torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)["state_dict"]


def test_iter_size_matches_the_large_batch(official, tmp_path):
    common = ["-a", "l_resnet", "--depth", "8", "--data", official, "--epochs", "1",
              "--no-progress", "--manualSeed", "5"]
    cifar.main(common + ["--train-batch", "8", "--iter-size", "4", "-c", str(tmp_path / "a")])
    cifar.main(common + ["--train-batch", "32", "--iter-size", "1", "-c", str(tmp_path / "b")])
    a, b = final_weights(str(tmp_path / "a")), final_weights(str(tmp_path / "b"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5
    # 48 images = one step of 32 and a last partial step of 16: both configurations split the
    # epoch into the same two steps, so the weights moved the same way twice.
    cifar.main(common + ["--train-batch", "32", "-c", str(tmp_path / "c"), "--manualSeed", "6"])
    c = final_weights(str(tmp_path / "c"))
    assert max((a[k] - c[k]).abs().max().item() for k in a) > 1e-4  # another seed differs


@pytest.mark.parametrize("norm, micro", [("bn", []), ("bcn", ["--ghost-batch", "2"])])
def test_micro_batches_of_a_large_batch_equal_accumulated_micro_batches(official, tmp_path, norm,
                                                                         micro):
    """--train-batch 32 --ghost-batch 2 is --train-batch 2 --iter-size 16: the same images in
    each normalisation batch of 2, in the same order (BCN's estimates too), and one optimizer
    step per 32 images. BN's micro-batch of 2 is its own batch; BCN takes --ghost-batch 2 to
    normalise its batch part with the estimates (its micro-batch form) in both."""
    common = ["-a", "resnet", "--depth", "8", "--norm", norm, "--ws", "--data", official,
              "--epochs", "1", "--no-progress", "--manualSeed", "5", "--test-batch", "20"]
    cifar.main(common + ["--train-batch", "32", "--ghost-batch", "2", "-c", str(tmp_path / "a")])
    cifar.main(common + micro + ["--train-batch", "2", "--iter-size", "16",
                                 "-c", str(tmp_path / "b")])
    a, b = final_weights(str(tmp_path / "a")), final_weights(str(tmp_path / "b"))
    assert list(a) == list(b)
    for k in a:
        # Weights to 1e-5; the running variances (values up to ~50) to 1e-5 of their size.
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5, msg=k)
    cifar.main(common + ["--train-batch", "32", "-c", str(tmp_path / "c")])  # whole-batch stats
    c = final_weights(str(tmp_path / "c"))
    assert max((a[k].float() - c[k].float()).abs().max().item() for k in a) > 1e-3


PAIRS = [(norm, ws) for norm in ("bn", "gn", "ln", "in", "bcn") for ws in (False, True)]


@pytest.mark.parametrize("norm, ws", PAIRS, ids=[f"{n}{'+ws' if w else ''}" for n, w in PAIRS])
def test_every_pair_trains_resumes_and_evaluates(official, tmp_path, capsys, norm, ws):
    run = str(tmp_path / "run")
    options = (["--gn-groups", "4"] if norm in ("gn", "bcn") else []) + (
        ["--ghost-batch", "4"] if norm == "bcn" and ws else [])
    cifar.main(["-a", "resnet", "--depth", "8", "--norm", norm, "--ws" if ws else "--no-ws",
                "--data", official, "--epochs", "1", "-c", run] + options + FAST)
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert (saved["args"]["norm"], saved["args"]["ws"]) == (norm, ws)
    # --resume rebuilds the pair from the checkpoint alone.
    cifar.main(["--resume", run, "--epochs", "2", "--data", official, "--no-progress"])
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 2 and all(math.isfinite(v) for v in rows[-1])
    capsys.readouterr()
    cifar.main(["-e", "--resume", run, "--data", official, "--no-progress"])
    acc = float(re.search(r"Test Acc:\s+([\d.]+)", capsys.readouterr().out).group(1))
    assert acc == pytest.approx(rows[-1][4], abs=0.006)


def test_same_seed_repeats_exactly_on_cpu(official, tmp_path):
    args = ["-a", "l_resnet", "--depth", "8", "--data", official, "--epochs", "1"] + FAST
    cifar.main(args + ["-c", str(tmp_path / "a")])
    cifar.main(args + ["-c", str(tmp_path / "b")])
    a, b = final_weights(str(tmp_path / "a")), final_weights(str(tmp_path / "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dataloader_path_trains(official, tmp_path):
    run = str(tmp_path / "run")
    cifar.main(["-a", "l_resnet", "--depth", "8", "--data", official, "--epochs", "1",
                "--loader", "dataloader", "-j", "0", "-c", run] + FAST)
    assert len(read_log_rows(os.path.join(run, "log.txt"))[1]) == 1


def run_script(args, env=None, timeout=120):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, os.path.join(REPO, "cifar.py")] + args, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def test_no_data_and_no_network_is_one_clear_line(tmp_path):
    # A proxy on a closed local port stands in for "no network", whatever the machine has.
    closed = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
              "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    start = time.time()
    result = run_script(["-a", "resnet", "--depth", "20", "--data", str(tmp_path / "none"),
                         "-c", str(tmp_path / "run")], env=closed)
    elapsed = time.time() - start
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "no cifar10 data found" in result.stderr
    assert "cifar-10-batches-py/ (official python layout)" in result.stderr
    assert "ImageFolder layout" in result.stderr and str(tmp_path / "none") in result.stderr
    assert elapsed < 60  # seconds, not a hang (most of it is importing torch)
    # A failed start leaves nothing behind: no empty run folder, no data folder.
    assert sorted(os.listdir(tmp_path)) == []


def test_md5_mismatch_still_loads_but_garbage_is_an_error(tmp_path):
    from utils.data.datasets import load_dataset
    from utils.data.errors import DataError
    root = make_cifar_pickles(str(tmp_path), n_train=10, n_test=5)
    train, test = load_dataset(root, download=False)
    assert train.images.shape == (10, 3, 32, 32) and len(test) == 5
    with open(os.path.join(root, "cifar-10-batches-py", "data_batch_2"), "wb") as f:
        f.write(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_2 is not a readable CIFAR"):
        load_dataset(root, download=False)


def test_modern_recipe_trains_logs_ema_and_resumes_exactly(official, tmp_path):
    """Warmup + step per iteration, LARS without decay on norms, label smoothing, CutMix + Cutout + Random
    Erasing, EMA: the log gains the EMA column, the checkpoint the EMA weights, and 1 + 1 epochs
    equal 2 straight, since every draw comes from (seed, epoch, batch)."""
    recipe = ["-a", "resnet", "--depth", "8", "--train-batch", "16", "--test-batch", "32",
              "--no-progress", "--manualSeed", "3", "--data", official, "--schedule", "1",
              "--warmup-epochs", "0.5", "--optimizer", "lars", "--no-wd-norm",
              "--label-smoothing", "0.1", "--cutmix", "1.0", "--cutout", "8",
              "--random-erasing", "0.5", "--ema", "0.9", "--lr", "0.5"]
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    cifar.main(recipe + ["--epochs", "2", "-c", straight])
    cifar.main(recipe + ["--epochs", "1", "-c", split])
    cifar.main(["--resume", split, "--epochs", "2", "--data", official, "--no-progress"])
    a = torch.load(os.path.join(straight, "checkpoint.pth.tar"), weights_only=True)
    b = torch.load(os.path.join(split, "checkpoint.pth.tar"), weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert all(torch.equal(a["ema_state_dict"][k], b["ema_state_dict"][k])
               for k in a["ema_state_dict"])
    names, rows = read_log_rows(os.path.join(straight, "log.txt"))
    assert names.rstrip("\t").split("\t")[-1] == "EMA Valid Acc." and len(rows[0]) == 6
    # Warmup starts the first epoch at 1/W of the LR: W = round(0.5 x 3 steps) = 2 steps.
    assert rows[0][0] == pytest.approx(0.25)
    with open(os.path.join(straight, "log.txt")) as f1, open(os.path.join(split, "log.txt")) as f2:
        assert f1.read() == f2.read()


def test_ghost_batch_norm_and_dual_cutout_train(official, tmp_path, capsys):
    run = str(tmp_path / "ghost")
    cifar.main(["-a", "resnet", "--depth", "8", "--train-batch", "16", "--no-progress",
                "--data", official, "--epochs", "1", "-c", run, "--ghost-batch", "4",
                "--cutout", "8", "--dual-cutout", "0.1", "--optimizer", "adamw", "--lr", "1e-3"])
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 1 and all(v == v for v in rows[0])  # finite, not NaN
    with pytest.raises(UsageError, match="--ghost-batch needs batch statistics"):
        cifar.main(["-a", "l_resnet", "--depth", "8", "--data", official, "--epochs", "1",
                    "-c", str(tmp_path / "l"), "--ghost-batch", "4"])
    with pytest.raises(UsageError, match="choose one of --mixup, --cutmix"):
        # Refused before looking for data: there is none at this --data.
        cifar.main(["-a", "resnet", "--depth", "8", "--data", str(tmp_path / "nowhere"),
                    "--no-download", "--mixup", "0.2", "--cutmix", "1", "-c", str(tmp_path / "m")])


@pytest.mark.parametrize("arch", [
    ["-a", "pyramidnet", "--depth", "20", "--alpha", "24"],
    ["-a", "l_pyramidnet", "--depth", "20", "--alpha", "24", "--block-name", "Bottleneck"],
    ["-a", "shake_shake", "--depth", "8", "--base-channels", "16"],
    ["-a", "l_shake_shake", "--depth", "8", "--base-channels", "16"],
    ["-a", "se_resnet", "--depth", "8"], ["-a", "l_se_resnet", "--depth", "8"],
    ["-a", "se_resnext", "--depth", "11", "--cardinality", "2", "--widen-factor", "1"],
    ["-a", "l_se_resnext", "--depth", "11", "--cardinality", "2", "--widen-factor", "1"],
], ids=lambda a: a[1] + ("-bottleneck" if "Bottleneck" in a else ""))
def test_new_architectures_train_one_epoch(official, tmp_path, arch):
    run = str(tmp_path / "run")
    cifar.main(arch + FAST + ["--data", official, "--epochs", "1", "-c", run])
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 1 and math.isfinite(rows[0][1])
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert saved["arch"] == arch[1]


def test_speed_flags_train_the_same_model_and_save_a_plain_checkpoint(official, tmp_path, capsys):
    """--compile and --channels-last change how the step runs, not what it computes: the weights
    after an epoch match the eager NCHW run, and the checkpoint holds the bare model's keys
    (no torch.compile prefix), so it resumes and evaluates without the flags. --amp bf16 trains
    with float32 master weights, so its checkpoint is float32 too. On the CPU, --channels-last
    without --compile warns for GroupNorm models, whose eager GroupNorm is slow on NHWC."""
    common = ["-a", "l_resnet", "--depth", "8", "--data", official, "--epochs", "1",
              "--no-progress", "--manualSeed", "3", "--train-batch", "16", "--test-batch", "20"]
    eager, fast, bf16 = (str(tmp_path / name) for name in ("eager", "fast", "bf16"))
    cifar.main(common + ["-c", eager])
    cifar.main(common + ["-c", fast, "--compile", "--channels-last"])
    assert "--channels-last without --compile" not in capsys.readouterr().err
    a, b = final_weights(eager), final_weights(fast)
    assert list(a) == list(b)
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-3

    cifar.main(common + ["-c", bf16, "--amp", "bf16", "--channels-last"])
    assert "--channels-last without --compile slows GroupNorm" in capsys.readouterr().err
    c = final_weights(bf16)
    assert all(c[k].dtype == a[k].dtype for k in a)
    moved = max((c[k].float() - a[k].float()).abs().max().item() for k in a)
    # Seen: compile 6e-5, bf16 5e-3; another --manualSeed moves the weights by ~1.
    assert 0 < moved < 0.05
    cifar.main(["--resume", fast, "--epochs", "2", "--data", official, "--no-progress"])
    assert len(read_log_rows(os.path.join(fast, "log.txt"))[1]) == 2


def test_tta_adds_a_column_and_can_pick_model_best(official, tmp_path, capsys):
    run = str(tmp_path / "tta")
    cifar.main(["-a", "l_resnet", "--depth", "8", "--data", official, "--epochs", "2", "-c", run,
                "--tta", "flip", "--best-by", "tta", "--clip-grad", "5"] + FAST)
    names, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert names.rstrip("\t").split("\t")[-1] == "TTA Valid Acc." and len(rows[0]) == 6
    best = torch.load(os.path.join(run, "model_best.pth.tar"), weights_only=True)
    assert best["best_acc"] == pytest.approx(max(r[5] for r in rows[:best["epoch"]]), abs=1e-4)
    capsys.readouterr()
    cifar.main(["-e", "--resume", run, "--data", official, "--no-progress"])
    tta = float(re.search(r"TTA  Acc:\s+([\d.]+)", capsys.readouterr().out).group(1))
    assert tta == pytest.approx(rows[-1][5], abs=0.006)


def test_accuracies_are_printed_rounded_to_two_decimals(tmp_path, capsys):
    """Three test images: an accuracy of 1/3 would print as 33.333333333333336 unrounded."""
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=16, n_test=3)
    cifar.main(["-a", "l_resnet", "--depth", "8", "--data", data, "--epochs", "1",
                "-c", str(tmp_path / "run")] + FAST)
    out = capsys.readouterr().out
    best = re.findall(r"^Best acc: (\S+)$", out, re.M)
    assert len(best) == 1 and re.fullmatch(r"\d+\.\d\d", best[0]), best
    assert float(best[0]) in (0.0, 33.33, 66.67, 100.0)


@pytest.mark.parametrize("argv, code, message", [
    (["-a", "l_resnet", "--depth", "8", "--ghost-batch", "2"], 2,
     "--ghost-batch needs batch statistics"),
    (["-a", "resnet", "--depth", "8", "--weights", "WEIGHTS"], 2, "does not fit the model")],
    ids=["ghost-batch", "weights"])
def test_a_model_refusal_comes_before_the_data_is_looked_for(argv, code, message, tmp_path,
                                                             capsys):
    """No data at --data: the model's line comes first, before "Preparing dataset", and the
    failed start leaves no run folder."""
    weights = tmp_path / "w.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, weights)
    argv = [str(weights) if a == "WEIGHTS" else a for a in argv]
    got, line = one_line_failure(cifar.main, argv + ["--data", str(tmp_path / "none"), "-c",
                                                     str(tmp_path / "run")], capsys)
    assert got == code and message in line, line
    assert not os.path.exists(tmp_path / "run")


def test_no_curves_leaves_the_drawing_to_plot_py(official, tmp_path, capsys):
    run = str(tmp_path / "run")
    cifar.main(["-a", "resnet", "--depth", "8", "--data", official, "--epochs", "1",
                "--no-curves", "-c", run] + FAST)
    assert not os.path.exists(os.path.join(run, "log.png"))
    assert not os.path.exists(os.path.join(run, "log.eps"))
    assert "(log.txt, run.json," in capsys.readouterr().out
    assert os.path.getsize(os.path.join(run, "log.txt")) > 0


def test_resume_without_data_reads_the_data_the_run_was_trained_on(tmp_path, capsys):
    from builders import make_cifar_pickles
    data = make_cifar_pickles(str(tmp_path / "mine"), n_train=16, n_test=8)
    run = str(tmp_path / "run")
    cifar.main(["-a", "resnet", "--depth", "8", "--data", data, "--epochs", "1",
                "--train-batch", "8", "--no-progress", "-c", run])
    capsys.readouterr()
    cifar.main(["--resume", run, "--epochs", "2", "--no-progress"])  # the README's line
    assert f"==> --resume: --data {data}, as the run did (write --data for another)" in capsys.readouterr().out
    import shutil
    shutil.rmtree(data)
    code, line = one_line_failure(cifar.main, ["--resume", run, "--epochs", "3"], capsys)
    assert code == 2 and f"trained with --data {data}, which is not there now" in line
    assert "--data DIR" in line


def test_resume_loads_as_the_run_did_and_warns_of_another_loader(official, tmp_path, capsys):
    run = str(tmp_path / "run")
    cifar.main(["-a", "resnet", "--depth", "8", "--data", official, "--epochs", "1",
                "--loader", "dataloader", "-c", run] + FAST)
    capsys.readouterr()
    cifar.main(["--resume", run, "--epochs", "2"] + FAST)
    assert "==> --resume: --loader dataloader, as the run did" in capsys.readouterr().out
    cifar.main(["--resume", run, "--epochs", "3", "--loader", "device"] + FAST)
    assert ("warning: --loader device: the run was trained with --loader dataloader; its batches "
            "are drawn differently, so the resumed run is not the run continued exactly"
            ) in capsys.readouterr().err


def test_imagenet_py_needs_data_unless_it_resumes(tmp_path, capsys):
    import imagenet
    code, line = one_line_failure(imagenet.main, ["-a", "resnet18", "-c", str(tmp_path / "r")],
                                  capsys)
    assert code == 2 and "--data is required" in line


def test_a_run_ends_saying_where_its_folder_is(tmp_path, capsys):
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=16, n_test=8)
    run = str(tmp_path / "run")
    cifar.main(["-a", "resnet", "--depth", "8", "--data", data, "--epochs", "1",
                "--train-batch", "8", "--no-progress", "-c", run])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"Run folder: {run} (")


@pytest.mark.parametrize("script", ["cifar", "imagenet"])
def test_help_ends_with_three_examples(script, capsys):
    import imagenet
    main = cifar.main if script == "cifar" else imagenet.main
    with pytest.raises(SystemExit):
        main(["--help"])
    tail = capsys.readouterr().out.split("examples:")[1]
    assert tail.count(f"python {script}.py") == 3
