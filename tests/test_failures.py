"""Runs a user can trust: a run folder belongs to one run, nothing is lost or overwritten before
the inputs are checked, every failure is one line without a traceback, and a run computes on
the threads it was given. Each test runs the real entry script (in this process where it can,
as a subprocess where signals, locks or thread pools must be a process's own) and compares the
files of earlier runs byte for byte before and after."""
import errno
import hashlib
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

import numpy as np
import pytest
import torch
from PIL import Image

from utils import atomic, mmhh, runs
from utils.mmhh import args as mmhh_args
from utils.mmhh import engine as mmhh_engine
from utils.mmhh import evaluate as mmhh_evaluate
from utils.mah import engine as mah_engine
from utils.errors import INTERRUPTED

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAH = ["--dataset", "digits", "--preset", "smoke", "--gpu", "cpu"]
MMHH = ["--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "cpu", "--hash_bit", "16"]
# 1,697 digits in batches of 64: an epoch (and its checkpoint) every 26 iterations, the last partial batch dropped
EPOCH_26 = ["--batch_size", "64"]


def entry(script, *argv, monkeypatch):
    """Run `script`.py as its command line would, in this process: (exit status, stdout, stderr lines)."""
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *map(str, argv)])
    code = 0
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            runpy.run_path(os.path.join(REPO, f"{script}.py"), run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), [line for line in err.getvalue().splitlines() if line.strip()]


def one_error(code, err, *words):
    """Exit status 2 and a single 'error: ' line holding every one of `words`."""
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0] and all(w in err[0] for w in words), err[0]
    return err[0]


def checksums(folder):
    """{relative path: sha256} of every file below `folder` but the lock file."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if name != runs.LOCK:
                path = os.path.join(root, name)
                found[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return found


def mmhh_paths(tmp_path):
    return ["--log_dir", tmp_path / "log", "--snap_path", tmp_path / "snap", "--test_output_dir", tmp_path / "out"]


def log_iterations(path):
    return [json.loads(line)["iteration"] for line in open(path)]


def killed_run(script, *argv, monkeypatch):
    """`script` run until its first checkpoint is written, then stopped as by Ctrl-C there."""
    module = mmhh_engine if script == "train_mmhh" else mah_engine
    real = module.save_checkpoint

    def killed(path, state):
        real(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_checkpoint", killed)
    try:
        return entry(script, *argv, monkeypatch=monkeypatch)
    finally:
        monkeypatch.setattr(module, "save_checkpoint", real)


@pytest.fixture
def mah_run(tmp_path, monkeypatch):
    """A finished MAH smoke run (gamma 200, seed 0), and the checksums of its files."""
    out = tmp_path / "run"
    code, _, err = entry("cascade_CIFAR-10", *MAH, "--output-dir", out, monkeypatch=monkeypatch)
    assert code == 0, err
    return out, checksums(out)


@pytest.fixture
def mmhh_run(tmp_path, monkeypatch):
    """A finished train_mmhh.py smoke run (annotation 'empty'), and the checksums of its files."""
    code, _, err = entry("train_mmhh", *MMHH, *mmhh_paths(tmp_path), monkeypatch=monkeypatch)
    assert code == 0, err
    return tmp_path / "log" / "empty_digits_digits", checksums(tmp_path)


# ----------------------------------------------------------------- 1. a folder holds one run

def test_a_new_run_refuses_a_folder_that_holds_a_run(mah_run, monkeypatch):
    """The same command with another gamma and seed into the folder of a finished run: one line
    naming --resume and --overwrite, no file of the first run changed. Catches the ownership
    check dropped (the second run used to print the first run's MAP and rewrite run.json)."""
    out, before = mah_run
    code, _, err = entry("cascade_CIFAR-10", *MAH, "--gamma", "50", "--seed", "3", "--output-dir", out,
                         monkeypatch=monkeypatch)
    one_error(code, err, "holds another run", f"--resume {out}", "--overwrite")
    assert checksums(out) == before


def test_a_new_run_refuses_a_folder_with_an_unfinished_checkpoint(tmp_path, monkeypatch):
    """A killed run (checkpoint, no results): a new run with another gamma is refused rather
    than continuing that checkpoint under the new gamma."""
    out = tmp_path / "killed"
    code, _, err = killed_run("cascade_CIFAR-10", *MAH, "--output-dir", out, monkeypatch=monkeypatch)
    assert code == INTERRUPTED and os.path.exists(out / "checkpoint.pt") and not os.path.exists(out / "results")
    before = checksums(out)
    code, _, err = entry("cascade_CIFAR-10", *MAH, "--gamma", "50", "--output-dir", out, monkeypatch=monkeypatch)
    one_error(code, err, "holds another run", "checkpoint.pt")
    assert checksums(out) == before


def test_overwrite_replaces_the_run_but_only_once_the_inputs_are_checked(mah_run, monkeypatch):
    """--overwrite with a bad input (a data root that is not there) keeps every old file; with good
    inputs the folder then holds the new run alone (its gamma in run.json and the results).
    Catches the old files removed before the checks, or --overwrite ignored."""
    out, before = mah_run
    code, _, err = entry("cascade_CIFAR-10", *MAH, "--dataset", "cifar10", "--data-root", out / "none",
                         "--overwrite", "--output-dir", out, monkeypatch=monkeypatch)
    one_error(code, err, "--data-root")
    assert checksums(out) == before
    code, _, err = entry("cascade_CIFAR-10", *MAH, "--gamma", "50", "--overwrite", "--output-dir", out,
                         monkeypatch=monkeypatch)
    assert code == 0, err
    record = json.load(open(out / "results" / "digits_MAH-cascade_4bits.json"))
    assert json.load(open(out / "run.json"))["gamma"] == record["args"]["gamma"] == 50
    assert log_iterations(out / "log.jsonl") == [0, 1]  # the new run's lines only


def test_train_mmhh_refuses_an_annotation_that_holds_a_run_and_its_snapshot(mmhh_run, tmp_path, monkeypatch):
    """A second train_mmhh.py with the same annotation: refused in one line; and with a new log
    folder but the same snapshot folder, the other run's snapshot is not overwritten."""
    _, before = mmhh_run
    code, _, err = entry("train_mmhh", *MMHH, "--seed", "1", *mmhh_paths(tmp_path), monkeypatch=monkeypatch)
    one_error(code, err, "holds another run", "--resume", "--overwrite")
    paths = mmhh_paths(tmp_path)
    paths[1] = tmp_path / "other-log"
    code, _, err = entry("train_mmhh", *MMHH, "--seed", "1", *paths, monkeypatch=monkeypatch)
    one_error(code, err, "empty_digits_digits_iter_00003.pt", "belongs to another run", "--overwrite")
    assert checksums(tmp_path / "log") == {k[len("log/"):]: v for k, v in before.items() if k.startswith("log/")}
    assert checksums(tmp_path) == before  # nothing new anywhere: the refused run made no folder


# ------------------------------------------------------------- 2. two runs on one folder

def test_a_second_run_on_a_folder_in_use_stops_at_once(tmp_path):
    """Two processes on one folder: while the first trains, the second exits with one line naming
    the first's process id; the first then finishes normally. Once the holder is killed
    (SIGKILL: no clean-up runs), the lock is gone and the run resumes. Catches a lock that is
    a marker file (it would outlive the killed holder) or no lock (both would train)."""
    out = str(tmp_path / "run")
    argv = [sys.executable, "cascade_CIFAR-10.py", *MAH, "--max-iter", "400", "--eval-every", "400",
            "--output-dir", out]
    first = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not os.path.exists(os.path.join(out, "checkpoint.pt")):  # it is training
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.2)
        second = subprocess.run(argv + ["--seed", "1"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert first.poll() is None  # still training when the second had stopped
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1 and f"in use by another run (process {first.pid})" in lines[0]
    finally:
        first.kill()  # SIGKILL: nothing of the run's own runs after it
        first.wait()
    runs.RunFolder(out, "--output-dir", resume=True).claim().release()  # the lock died with its process


def test_train_mmhh_stops_at_once_on_an_annotation_in_use(tmp_path, monkeypatch):
    """A run folder held by another holder of the lock (here this process, through RunFolder):
    train_mmhh.py with that annotation stops with one line and writes nothing. Catches
    train_mmhh.py claiming its folder without the lock."""
    folder = runs.RunFolder(str(tmp_path / "log" / "empty_digits_digits"), "--annotation").claim()
    try:
        code, _, err = entry("train_mmhh", *MMHH, *mmhh_paths(tmp_path), monkeypatch=monkeypatch)
    finally:
        folder.release()
    one_error(code, err, "in use by another run", f"process {os.getpid()}")
    assert checksums(tmp_path) == {}


# ------------------------------------------------- 3. nothing deleted before the checks

def test_a_failed_rerun_keeps_a_killed_mmhh_runs_checkpoint_and_log(tmp_path, monkeypatch):
    """A killed train_mmhh.py run, then the same command without --resume but with a bad
    --pre_model_path (also with --overwrite): both fail in one line and the checkpoint and log
    are byte for byte what the killed run left. Catches files removed before the checks."""
    code, _, err = killed_run("train_mmhh", *MMHH, *EPOCH_26, "--num_iters", "40", "--log_every", "5",
                              *mmhh_paths(tmp_path), monkeypatch=monkeypatch)
    assert code == INTERRUPTED and "--resume" in err[-1]
    before = checksums(tmp_path)
    assert {"log/empty_digits_digits/checkpoint.pt", "log/empty_digits_digits/log.jsonl"} <= set(before)
    for extra in ([], ["--overwrite"]):
        code, _, err = entry("train_mmhh", *MMHH, *EPOCH_26, "--num_iters", "40", "--log_every", "5",
                             *mmhh_paths(tmp_path), *extra,
                             "--pre_model_path", tmp_path / "missing", monkeypatch=monkeypatch)
        assert code == 2 and len(err) == 1 and "Traceback" not in err[0]
        assert checksums(tmp_path) == before


# --------------------------------------------------------------------- 4. a full disk

def _mount_tmpfs(folder, size):
    os.makedirs(folder)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True, timeout=30)
    except OSError as e:
        pytest.skip(f"cannot run mount ({e}): a small file system needs mount rights")
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs ({done.stderr.strip()}): needs root or CAP_SYS_ADMIN")


def test_a_full_disk_is_one_line_keeps_the_checkpoint_and_leaves_no_temporary(tmp_path, monkeypatch):
    """A real 3 MB file system as the run folder: a 1.8 MB checkpoint fits once, not twice. The
    run stops in one line naming the folder and the size the write needed; the first
    checkpoint loads; no temporary is left; a resume fails the same way and leaves the log with
    each iteration once. Catches the temporary kept, a traceback, or log lines repeated."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "3m")
    try:
        out = disk / "run"
        code, _, err = entry("cascade_CIFAR-10", *MAH, "--max-iter", "6", "--output-dir", out, monkeypatch=monkeypatch)
        one_error(code, err, f"no space left in {out}", "checkpoint.pt needs 1.8 MB")
        names = set(os.listdir(out))
        assert not any(atomic.TEMPORARY.search(n) for n in names) and "checkpoint.pt" in names
        assert runs.load_checkpoint(str(out / "checkpoint.pt"))["iteration"] == 0
        code, _, err = entry("cascade_CIFAR-10", "--resume", out, monkeypatch=monkeypatch)
        one_error(code, err, "no space left")
        assert not any(atomic.TEMPORARY.search(n) for n in os.listdir(out))
        assert log_iterations(out / "log.jsonl") == [0, 1]  # 1 failed to save, and is there once
    finally:
        subprocess.run(["umount", str(disk)], timeout=30)


def test_a_failed_write_keeps_the_previous_file_says_why_and_removes_its_temporary(tmp_path, monkeypatch):
    """The disk fills while a checkpoint is written (fsync fails with ENOSPC, made by the test):
    a UserError naming the folder and the bytes needed, the old checkpoint whole, no temporary.
    The same without a full disk (a folder that refuses writes: EACCES): 'cannot write'."""
    path = str(tmp_path / "checkpoint.pt")
    runs.save_checkpoint(path, {"iteration": 1, "model": {}})
    size = 3000

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(runs.UserError, match=rf"no space left in {tmp_path}: writing checkpoint.pt needs 2.9 kB"):
        atomic.atomic_write(path, lambda f: f.write(b"x" * size))
    assert os.listdir(tmp_path) == ["checkpoint.pt"] and runs.load_checkpoint(path)["iteration"] == 1

    def refused(fd):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "fsync", refused)
    with pytest.raises(runs.UserError, match="cannot write .*checkpoint.pt \\(Permission denied\\)"):
        runs.save_checkpoint(path, {"iteration": 2, "model": {}})
    assert os.listdir(tmp_path) == ["checkpoint.pt"] and runs.load_checkpoint(path)["iteration"] == 1


def test_a_killed_writes_temporary_is_removed_when_the_run_resumes(tmp_path, monkeypatch):
    """A temporary that a SIGKILL mid-write left (made here by hand, the name atomic_write
    gives) is gone once the run resumes, and the run finishes. Catches start() no longer
    clearing temporaries (they would pile up, one per killed write)."""
    out = tmp_path / "run"
    killed_run("cascade_CIFAR-10", *MAH, "--output-dir", out, monkeypatch=monkeypatch)
    (out / "checkpoint.pt.99999.tmp").write_bytes(b"half a checkpoint")
    code, _, err = entry("cascade_CIFAR-10", "--resume", out, monkeypatch=monkeypatch)
    assert code == 0, err
    assert not (out / "checkpoint.pt.99999.tmp").exists() and (out / "results").is_dir()


# ------------------------------------------------------------ 5. places that cannot be written

@pytest.mark.parametrize("script,option", [("cascade_CIFAR-10", "--output-dir"), ("train_mmhh", "--log_dir"),
                                           ("train_mmhh", "--snap_path"), ("train_mmhh", "--test_output_dir")])
@pytest.mark.parametrize("where", ["below a file", "/proc"])
def test_an_output_path_that_cannot_be_written_is_one_line_before_training(script, option, where, tmp_path,
                                                                           monkeypatch):
    """A folder below a regular file, or in /proc: one line naming the option, before any
    training (nothing is left behind in the other output folders). Catches --snap_path and
    --test_output_dir checked only after training."""
    (tmp_path / "file").write_text("a file\n")
    bad = tmp_path / "file" / "x" if where == "below a file" else "/proc/x"
    argv = [*MAH, "--output-dir", bad] if script.startswith("cascade") else \
        [*MMHH, *mmhh_paths(tmp_path)] + [option, bad]
    code, out, err = entry(script, *argv, monkeypatch=monkeypatch)
    one_error(code, err, option, "cannot be made", "choose a folder you can write")
    assert os.listdir(tmp_path) == ["file"] and "snapshot" not in out


def test_test_mmhh_checks_its_output_folders_before_testing(mmhh_run, tmp_path, monkeypatch):
    """test_mmhh.py with --output_path in /proc, or --log_dir below a file: one line, no test run.
    Catches the folders made only after the test (a traceback from np.save or write_json)."""
    (tmp_path / "file").write_text("a file\n")
    snapshot = tmp_path / "snap" / "empty_digits_digits_iter_00003"
    for option, bad in (("--output_path", "/proc/x"), ("--log_dir", tmp_path / "file" / "x")):
        code, out, err = entry("test_mmhh", "--model_path", snapshot, "--gpu_id", "cpu", "--log_dir",
                               tmp_path / "tlog", option, bad, monkeypatch=monkeypatch)
        one_error(code, err, option, "cannot be made")
        assert "MAP" not in out


# -------------------------------------------------------------- 6. foreign folders and models

def test_foreign_run_folders_and_models_are_one_line(mah_run, mmhh_run, tmp_path, monkeypatch):
    """Every mismatch is refused before any state is loaded, naming what the file holds:
    a MAH script resuming an MMHH folder and train_mmhh.py a MAH one, run.json of {} or [1, 2],
    an MMHH checkpoint in a MAH folder, the cascade script resuming a flat run... Catches
    KeyErrors and load_state_dict tracebacks (each case was one)."""
    mah_out, _ = mah_run
    mmhh_dir, _ = mmhh_run
    snapshot = tmp_path / "snap" / "empty_digits_digits_iter_00003.pt"
    one_error(*entry("cascade_CIFAR-10", "--resume", mmhh_dir, monkeypatch=monkeypatch)[::2],
              "holds a train_mmhh.py run")
    # and train_mmhh.py resuming where a MAH run's record is
    (tmp_path / "log3" / "empty_digits_digits").mkdir(parents=True)
    shutil.copy(mah_out / "run.json", tmp_path / "log3" / "empty_digits_digits" / "run.json")
    paths = mmhh_paths(tmp_path)
    paths[1] = tmp_path / "log3"
    one_error(*entry("train_mmhh", *MMHH, *paths, "--resume", monkeypatch=monkeypatch)[::2],
              "holds a MAH run", "its script's --resume")
    for text in ("{}", "[1, 2]"):
        folder = tmp_path / f"record{len(text)}"
        folder.mkdir()
        (folder / "run.json").write_text(text)
        one_error(*entry("cascade_CIFAR-10", "--resume", folder, monkeypatch=monkeypatch)[::2],
                  "is not one this project wrote")
    one_error(*entry("flat_CIFAR-10", "--resume", mah_out, monkeypatch=monkeypatch)[::2],
              "holds a run of cascade_CIFAR-10.py", f"python cascade_CIFAR-10.py --resume {mah_out}")
    # an MMHH checkpoint where the MAH run's unfinished checkpoint was
    shutil.rmtree(mah_out / "results")
    shutil.copy(mah_out / "checkpoint.pt", tmp_path / "mah.pt")
    shutil.copy(mmhh_dir / "checkpoint.pt", mah_out / "checkpoint.pt")
    one_error(*entry("cascade_CIFAR-10", "--resume", mah_out, monkeypatch=monkeypatch)[::2],
              "holds train_mmhh.py model", "not MAH-cascade")
    # test_mmhh.py on a MAH checkpoint; --pre_model_path of a snapshot of another code length
    one_error(*entry("test_mmhh", "--model_path", tmp_path / "mah.pt", "--gpu_id", "cpu",
                     monkeypatch=monkeypatch)[::2], "holds MAH-cascade", "not train_mmhh.py model")
    code, _, err = entry("test_mmhh", "--model_path", REPO + "/README.md", "--gpu_id", "cpu", monkeypatch=monkeypatch)
    assert "resum" not in one_error(code, err, "give --model_path a snapshot")
    paths = mmhh_paths(tmp_path)
    paths[1] = tmp_path / "log2"
    code, _, err = entry("train_mmhh", *MMHH[:-1], "32", "--annotation", "b", *paths, "--pre_model_path", snapshot,
                         monkeypatch=monkeypatch)
    line = one_error(code, err, "hash_bit 16", "not train_mmhh.py model, hash_bit 32", "--pre_model_path")
    assert "resum" not in line


def test_resume_refuses_options_that_differ_from_the_runs(mah_run, mmhh_run, tmp_path, monkeypatch):
    """--resume with another --gamma (MAH) or --hash_bit (MMHH): one line naming the option and
    the run's value. The run's own values, --gpu and --workers are accepted. Catches options
    given with --resume silently ignored (or, for MMHH, a state_dict traceback)."""
    out, before = mah_run
    one_error(*entry("cascade_CIFAR-10", "--resume", out, "--gamma", "50", monkeypatch=monkeypatch)[::2],
              "--gamma 50.0 (the run's: 200)")
    one_error(*entry("train_mmhh", *MMHH[:-1], "32", *mmhh_paths(tmp_path), "--resume", monkeypatch=monkeypatch)[::2],
              "--hash_bit 32 (the run's: 16)")
    code, _, err = entry("cascade_CIFAR-10", "--resume", out, "--gamma", "200", "--gpu", "cpu", "--workers", "0",
                         "--bits", "4", monkeypatch=monkeypatch)
    assert code == 0 and checksums(out) == before  # finished: nothing trained again, nothing rewritten


# -------------------------------------------------------------------------- 7. divergence

def _poison_batch_norm(module_class, monkeypatch):
    """Before every forward in training mode, the first batch norm's running mean becomes inf:
    the training loss stays finite (batch statistics are used), the model does not."""
    real = module_class.forward

    def forward(self, *args):
        for m in self.modules():
            if isinstance(m, torch.nn.BatchNorm2d) and self.training:
                m.running_mean.fill_(float("inf"))
                break
        return real(self, *args)

    monkeypatch.setattr(module_class, "forward", forward)


@pytest.mark.parametrize("script", ["cascade_CIFAR-10", "train_mmhh"])
def test_non_finite_batch_norm_statistics_stop_the_run_before_anything_is_written(script, tmp_path, monkeypatch):
    """Batch-norm statistics that overflow while the loss stays finite (what --lr 1e9 did):
    one line naming the buffer and --lr, no checkpoint, no snapshot, no results. Catches the
    check dropped: MMHH then wrote a snapshot and stopped in the metrics with a ValueError."""
    from utils.models import HashModel, MAHNet

    _poison_batch_norm(MAHNet if script.startswith("cascade") else HashModel, monkeypatch)
    argv = [*MAH, "--output-dir", tmp_path / "log"] if script.startswith("cascade") else [*MMHH, *mmhh_paths(tmp_path)]
    code, _, err = entry(script, *argv, monkeypatch=monkeypatch)
    one_error(code, err, "diverged", "running_mean", "lower --lr")
    files = set(checksums(tmp_path))
    assert not any(f.endswith(("checkpoint.pt", ".npy")) or "/results/" in f or f.startswith("snap") for f in files)


def test_a_model_with_non_finite_outputs_is_one_line_at_the_test(monkeypatch):
    """test_model on a model whose outputs are inf: a UserError, not the metrics' ValueError
    ("scores must be finite"). Catches the outputs' check dropped."""
    from utils.data.loader import load_data
    from utils.models import HashModel, SmallConvNet

    model = HashModel(SmallConvNet(), SmallConvNet().out_features, 8)
    monkeypatch.setattr(model, "forward", lambda x: torch.full((len(x), 8), float("inf")))
    args = mmhh.get_train_parser().parse_args(["--preset", "smoke"])
    args = mmhh_args.resolve(args)
    with pytest.raises(runs.UserError, match="outputs are not finite.*lower --lr"):
        mmhh_evaluate.test_model(model, load_data("digits"), "cpu", args, 0.1, 0, 2, 16)


# ---------------------------------------------------------------------------- 8. options

@pytest.mark.parametrize("script,argv,words", [
    ("cascade_CIFAR-10", ["--lr", "-1"], ["--lr", "> 0"]),
    ("cascade_CIFAR-10", ["--seed", "-1"], ["--seed", "from 0 to"]),
    ("cascade_CIFAR-10", ["--momentum", "-5"], ["--momentum", "[0, 1)"]),
    ("cascade_CIFAR-10", ["--head-weights", "a,b,c"], ["--head-weights", "numbers"]),
    ("cascade_CIFAR-10", ["--head-weights", "1,-2,1"], ["--head-weights", "at least 0"]),
    ("cascade_CIFAR-10", ["--workers", "-1"], ["--workers", ">= 0"]),
    ("cascade_CIFAR-10", ["--gamma", "-1"], ["--gamma", ">= 0"]),
    ("cascade_CIFAR-10", ["--bits", "4,4"], ["--bits", "twice"]),
    ("cascade_CIFAR-10", ["--lr", "nan"], ["--lr", "> 0"]),
    ("train_mmhh", ["--lr", "-1"], ["--lr", "> 0"]),
    ("train_mmhh", ["--seed", "-1"], ["--seed", "from 0 to"]),
    ("train_mmhh", ["--workers", "-1"], ["--workers", ">= 0"]),
    ("train_mmhh", ["--gamma", "-1", "--distance_type", "MMHH"], ["--gamma", "> 0"]),
    ("train_mmhh", ["--semi_init_momentum", "2"], ["--semi_init_momentum", "[0, 1]"]),
    ("test_mmhh", ["--model_path", "x", "--seed", "-1"], ["--seed", "from 0 to"]),
    ("test_mmhh", ["--model_path", "x", "--test_sample_ratio", "0"], ["--test_sample_ratio", "(0, 1]"]),
])
def test_out_of_range_options_are_one_line_naming_the_option(script, argv, words, tmp_path, monkeypatch):
    """Each option checked where it is parsed: one 'error:' line naming it, exit 2, no usage block.
    Catches a check dropped (a traceback from numpy, torch or the optimiser, or a silent run)."""
    extra = ["--output-dir", tmp_path / "o"] if script.startswith("cascade") else []
    one_error(*entry(script, *MAH if script.startswith("cascade") else [], *argv, *extra,
                     monkeypatch=monkeypatch)[::2], *words)
    assert not os.listdir(tmp_path)


# -------------------------------------------------------------------------- 9. list files

def _lists(root, paths, labels, encoding="utf-8", bom=False):
    root.mkdir(exist_ok=True)
    for part in ("database", "test"):
        text = "".join(f"{p}\n" for p in paths)
        data = ("\ufeff" if bom else "").encode("utf-8") + text.encode(encoding)
        (root / f"{part}_img.txt").write_bytes(data)
        (root / f"{part}_label.txt").write_text("".join(f"{c}\n" for c in labels))


def test_list_files_in_utf8_with_a_bom_spaces_in_paths_and_a_latin1_byte(tmp_path, monkeypatch):
    """A BOM is not part of the first path, MAH-style paths may hold spaces (the original read
    whole lines), a Latin-1 byte is one line naming file and line. Catches utf-8 without
    '-sig' (the BOM stays in the path), a split() of the path, or a UnicodeDecodeError."""
    from utils.data.listfiles import read_mah_lists

    root = tmp_path / "lists"
    names = [f"my images/é{i}.png" for i in range(3)]
    (root / "my images").mkdir(parents=True)
    for name in names:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / name)
    _lists(root, names, [0, 1, 2], bom=True)
    got = read_mah_lists(str(root), "database", 10)
    assert got.paths == [str(root / n) for n in names]
    _lists(root, names, [0, 1, 2], encoding="latin-1")
    with pytest.raises(runs.UserError, match=rf"{root}/database_img.txt:1: byte 0xe9 is not UTF-8"):
        read_mah_lists(str(root), "database", 10)


def test_list_file_errors_name_their_file(tmp_path, monkeypatch):
    """An empty list names its file; a HashNet-style line whose path has a space says why it is
    refused; a corrupt image stops the run before training (MMHH: before any snapshot).
    Catches 'list: no images listed', a bare 'expected path label' message, and images first
    read at the test after training."""
    from utils.data.listfiles import read_hashnet_list, read_mah_lists

    (tmp_path / "database_img.txt").write_text("\n\n")
    (tmp_path / "database_label.txt").write_text("")
    with pytest.raises(runs.UserError, match=rf"list file {tmp_path}/database_img.txt lists no images"):
        read_mah_lists(str(tmp_path), "database", 10)
    (tmp_path / "train.txt").write_text("a.png 1\nmy photo.png 3\n")
    with pytest.raises(runs.UserError, match=r"train.txt:2: the image path has a space"):
        read_hashnet_list(str(tmp_path / "train.txt"), 10, check_exists=False)
    # a list data set for train_mmhh.py, one of whose test images is not an image
    root = tmp_path / "coco"
    root.mkdir()
    for part, n in (("train", 12), ("database", 12), ("test", 4)):
        lines = []
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 40 * (i % 3), np.uint8)).save(root / f"{part}{i}.png")
            lines.append(f"{part}{i}.png " + " ".join("1" if c == i % 3 else "0" for c in range(80)))
        (root / f"{part}.txt").write_text("\n".join(lines) + "\n")
    (root / "test2.png").write_bytes(b"not an image")
    code, out, err = entry("train_mmhh", "--s_dataset", "coco_80", "--data_root", root, "--preset", "smoke",
                           "--gpu_id", "cpu", "--workers", "0", *mmhh_paths(tmp_path), monkeypatch=monkeypatch)
    one_error(code, err, "test.txt:3", "test2.png cannot be read")
    assert "snapshot" not in out and not (tmp_path / "snap").exists()


# -------------------------------------------------------------------------------- 10. Ctrl-C

def test_ctrl_c_is_one_line_with_the_resume_command_and_the_resume_finishes(tmp_path):
    """SIGINT to a training MAH script: exit 130, one line saying where it stopped and the
    --resume command, which then finishes the run with each iteration logged once. Catches
    the KeyboardInterrupt traceback (50 to 67 lines) or a wrong command in the line."""
    out = str(tmp_path / "run")
    argv = [sys.executable, "cascade_CIFAR-10.py", *MAH, "--max-iter", "10", "--eval-every", "10",
            "--output-dir", out]
    # a shell starts background jobs with SIGINT ignored, and Python then installs no handler:
    # the script gets the default disposition, as from a terminal, whatever ran the tests
    run = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(out, "checkpoint.pt")):
        assert run.poll() is None and time.time() < deadline
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert run.returncode == INTERRUPTED and len(lines) == 1, err
    assert lines[0].startswith("interrupted in outer iteration ") and "at 4 bits" in lines[0]
    command = lines[0].split("continue with: ")[1]
    assert command == f"python cascade_CIFAR-10.py --resume {out}"
    done = subprocess.run([sys.executable, *command.split()[1:]], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert log_iterations(os.path.join(out, "log.jsonl")) == list(range(10))


def test_ctrl_c_in_train_mmhh_names_its_resume_command(tmp_path, monkeypatch):
    """Ctrl-C in iteration 31 of train_mmhh.py: exit 130 and one line saying how much the
    checkpoint holds, whose command, run as given, finishes the run. Catches a resume command
    that does not name the run (another --log_dir or annotation) or a stale position."""
    real = mmhh_engine.train_one_step

    def interrupted(args, t, *rest):
        if t == 30:
            raise KeyboardInterrupt
        return real(args, t, *rest)

    monkeypatch.setattr(mmhh_engine, "train_one_step", interrupted)
    code, _, err = entry("train_mmhh", *MMHH, *EPOCH_26, "--num_iters", "40", *mmhh_paths(tmp_path),
                         monkeypatch=monkeypatch)
    assert code == INTERRUPTED and len(err) == 1, err
    assert err[0].startswith("interrupted at iteration 31 of 40 (26 of them in the checkpoint)")
    monkeypatch.setattr(mmhh_engine, "train_one_step", real)
    command = err[0].split("continue with: ")[1].split()
    assert command[:2] == ["python", "train_mmhh.py"] and command[-1] == "--resume"
    code, _, err = entry("train_mmhh", *command[2:], "--gpu_id", "cpu", monkeypatch=monkeypatch)
    assert code == 0, err


# ------------------------------------------------------------------ 11. logs after a resume

def test_a_killed_mmhh_run_resumes_with_each_log_line_once(tmp_path, monkeypatch):
    """Killed after the log lines of iterations 30 to 50 were written but before the
    checkpoint at 52: the resumed run's log.jsonl holds every iteration once, in order, as an
    uninterrupted run's does. Catches the log not cut back to the checkpoint."""
    real, calls = mmhh_engine.save_checkpoint, []

    def killed_at_second(path, state):
        calls.append(state["iteration"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # the log has lines past the first checkpoint, the second is lost
        real(path, state)

    monkeypatch.setattr(mmhh_engine, "save_checkpoint", killed_at_second)
    argv = [*MMHH, *EPOCH_26, "--num_iters", "60", "--log_every", "5", *mmhh_paths(tmp_path)]
    code, _, _ = entry("train_mmhh", *argv, monkeypatch=monkeypatch)
    log = tmp_path / "log" / "empty_digits_digits" / "log.jsonl"
    assert code == INTERRUPTED and log_iterations(log) == list(range(5, 51, 5))
    monkeypatch.setattr(mmhh_engine, "save_checkpoint", real)
    code, _, err = entry("train_mmhh", *argv, "--resume", monkeypatch=monkeypatch)
    assert code == 0, err
    assert log_iterations(log) == list(range(5, 61, 5))


# ------------------------------------------------------------------------------- 12. threads

THREADS = """
import numpy as np, torch
before = torch.get_num_threads()
from utils import metrics, records
q = torch.sign(torch.randn(40, 12)); d = torch.sign(torch.randn(300, 12))
metrics.mean_average_precision(q, d, np.arange(40) % 3, np.arange(300) % 3)
metrics.mean_average_precision(q, d, np.arange(40) % 3, np.arange(300) % 3, ties="expected")
import numba
print(before, torch.get_num_threads(), numba.get_num_threads(), records.thread_counts()["torch"])
"""


def test_a_metrics_call_keeps_the_thread_count_the_user_set():
    """Under OMP_NUM_THREADS=1, torch's thread count is 1 before and after the compiled metric
    passes, and they ran on 1 thread too. Catches numba's OpenMP layer (it set torch's pool to
    the core count, 2 here) or numba's passes ignoring the count."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("NUMBA_NUM_THREADS", None)
    env.pop("NUMBA_THREADING_LAYER", None)
    done = subprocess.run([sys.executable, "-c", THREADS], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1", "1", "1"]


def test_runs_record_their_thread_counts(mah_run, mmhh_run):
    """run.json and the results files say how many threads torch and numba computed with.
    Catches the record dropped from either file, or numba's count reported as its pool size."""
    out, _ = mah_run
    mmhh_dir, _ = mmhh_run
    want = {"torch": torch.get_num_threads(), "numba": min(torch.get_num_threads(), os.cpu_count())}
    for path in (out / "run.json", out / "results" / "digits_MAH-cascade_4bits.json", mmhh_dir / "run.json",
                 mmhh_dir / "results" / "digits_Hamming_16bits.json"):
        threads = json.load(open(path))["threads"]
        assert {k: threads[k] for k in want} == want and threads["numba_layer"] == "workqueue"


# ------------------------------------------------------------------------------- 13. smaller

def test_device_errors_name_the_option_and_leave_no_folder(tmp_path, monkeypatch):
    """--gpu_id abc is reported as --gpu_id; --gpu abc leaves no run folder behind. Catches the
    option misnamed and the device checked after the folder is made."""
    one_error(*entry("train_mmhh", *MMHH[:-3], "abc", *mmhh_paths(tmp_path), monkeypatch=monkeypatch)[::2],
              "--gpu_id must be")
    one_error(*entry("cascade_CIFAR-10", *MAH[:-1], "abc", "--output-dir", tmp_path / "a" / "b",
                     monkeypatch=monkeypatch)[::2], "--gpu must be")
    assert not os.listdir(tmp_path)


def test_a_run_that_fails_its_checks_leaves_no_folder_it_made(tmp_path, monkeypatch):
    """A new run whose data cannot be found removes the folders it made for itself (and only
    those: the parent that was there stays). Catches abandon() dropped from starting()."""
    one_error(*entry("cascade_CIFAR-10", *MAH[:-4], "--dataset", "cifar10", "--data-root", tmp_path / "none",
                     "--gpu", "cpu", "--output-dir", tmp_path / "a" / "b", monkeypatch=monkeypatch)[::2],
              "--data-root")
    assert not os.listdir(tmp_path)
