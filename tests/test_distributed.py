"""The training scripts under torchrun (processes on the CPU with gloo; on GPUs with NCCL
where CUDA is there) against one plain process.

Each test starts real processes (`python -m torch.distributed.run --standalone`), on the
embedded digits with the smoke preset, so they take a few seconds each. The NCCL tests need
one CUDA device per process and are skipped elsewhere.
"""
import json
import os
import subprocess
import sys

import pytest
import torch
from test_mah import list_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_BATCHNORM = os.path.join(REPO, "tests", "scripts", "mah_no_batchnorm.py")
# 45 sampled items in batches of 16: the last batch of 13 splits into shares of 7 and 6
SMOKE = ["--preset", "smoke", "--workers", "0", "--max-iter", "3", "--eval-every", "3", "--epochs", "2",
         "--num-samples", "45"]
CPU = [*SMOKE, "--gpu", "cpu"]


def needs_gpus(n):
    """NCCL takes one CUDA device per process: a machine with one GPU runs the one-process case only."""
    return pytest.mark.skipif(torch.cuda.device_count() < n, reason=f"needs {n} CUDA device(s)")


NCCL = [pytest.param(n, marks=needs_gpus(n), id=f"nccl-{n}") for n in (1, 2)]
# (--gpu, processes) of the real scripts' runs: two CPU processes (gloo), and NCCL where there are GPUs
LAUNCHES = [pytest.param("cpu", 2, id="gloo-2"), *(pytest.param("0", n, marks=needs_gpus(n), id=f"nccl-{n}")
                                                    for n in (1, 2))]


def start(script, *argv, processes=None, env=None, timeout=240):
    """The script in one plain process, or under torchrun with `processes` processes."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                str(processes)] if processes else [sys.executable]
    return subprocess.run([*launcher, script, *map(str, argv)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def why(run):
    """A failed run's stderr: its first lines, where a process that aborted says why, and the end,
    where torchrun sums up (which alone would fill a tail of the output)."""
    err = run.stderr
    return err if len(err) <= 5000 else f"{err[:3000]}\n[...]\n{err[-2000:]}"


def finished(out):
    """V of every head, the results record and the log records of a finished run folder."""
    V = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)["V"]
    with open(os.path.join(out, "results", "digits_MAH-cascade_4bits.json")) as f:
        result = json.load(f)
    with open(os.path.join(out, "log.jsonl")) as f:
        log = [json.loads(line) for line in f]
    return V, result, log


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    run = start(NO_BATCHNORM, *CPU, "--output-dir", out)
    assert run.returncode == 0, why(run)
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    run = start(NO_BATCHNORM, *CPU, "--output-dir", out, processes=2)
    assert run.returncode == 0, why(run)
    assert "2 processes (gloo)" in run.stdout
    return out


def test_two_processes_learn_the_same_codes_as_one(one_process, two_processes):
    # Same sample, batches and augmentation in both; each process trains on half of each
    # batch and DDP averages the gradients; the queries are encoded in shares and gathered.
    # Catches a share left out of U (DCC would see zeros), a loss not weighted by its share
    # (the unequal shares of the last batch),
    # gradients not averaged, a V not shared, gathered query codes out of order.
    V1, result1, log1 = finished(one_process)
    V2, result2, log2 = finished(two_processes)
    for a, b in zip(V1, V2):
        assert torch.equal(a, b)  # signs: the float differences below flip none of them here
    assert result2["metrics"]["map_tie_aware"] == result1["metrics"]["map_tie_aware"]
    assert result2["metrics"]["map"] == result1["metrics"]["map"]
    assert (result1["world_size"], result2["world_size"]) == (1, 2)
    # the same losses up to float summation order (the gradient of a half-batch sum plus
    # DDP's average, against one sum over the batch): observed within 2e-6 relative
    assert len(log2) == len(log1) == 3  # rank 0 alone writes the log
    for a, b in zip(log1, log2):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)


def test_a_run_killed_under_torchrun_fails_then_resumes_to_the_same_codes(tmp_path, two_processes):
    # Rank 0 dies after its checkpoint of iteration 1; rank 1, waiting at the next
    # collective, must not hang: torchrun ends it and the run exits non-zero. The resumed
    # run (same world size) must end where the uninterrupted one did.
    killed = start(NO_BATCHNORM, *CPU, "--output-dir", tmp_path, processes=2, env={"DIE_AFTER_ITERATION": "1"})
    assert killed.returncode != 0
    assert not os.path.exists(os.path.join(tmp_path, "results"))
    resumed = start(NO_BATCHNORM, "--resume", tmp_path, processes=2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    V, result, log = finished(tmp_path)
    V2, result2, _ = finished(two_processes)
    for a, b in zip(V, V2):
        assert torch.equal(a, b)
    assert result["metrics"]["map_tie_aware"] == result2["metrics"]["map_tie_aware"]
    assert [r["iteration"] for r in log] == [0, 1, 2]  # iteration 2 once: rank 0 alone wrote


@pytest.mark.parametrize("gpu, processes", LAUNCHES)
def test_a_script_runs_under_torchrun(tmp_path, gpu, processes):
    # The real entry script with its batch-normalised backbone (on GPUs SyncBatchNorm inside
    # DDP): one results file, from rank 0, on the backend of the device. Catches a conversion
    # or a DDP set-up that fails on CUDA, a process that writes beside rank 0.
    run = start(os.path.join(REPO, "flat_CIFAR-10.py"), "--dataset", "digits", "--bits", 4, *SMOKE, "--gpu", gpu,
                "--output-dir", tmp_path, processes=processes)
    assert run.returncode == 0, why(run)
    assert ("(gloo)" if gpu == "cpu" else "(nccl)") in run.stdout
    assert os.listdir(os.path.join(tmp_path, "results")) == ["digits_MAH-flat_4bits.json"]
    with open(os.path.join(tmp_path, "results", "digits_MAH-flat_4bits.json")) as f:
        assert json.load(f)["world_size"] == processes
    assert run.stdout.count("tie-aware MAP") == 1  # one summary, not one per process


def test_torchrun_with_one_process_is_a_plain_run(tmp_path, one_process):
    # Under torchrun one process still joins a process group (what a one-GPU machine needs
    # to run NCCL) and must compute exactly what a plain process does: a share weight, a sum
    # or a broadcast that changed anything with one process would show here.
    run = start(NO_BATCHNORM, *CPU, "--output-dir", tmp_path, processes=1)
    assert run.returncode == 0, why(run)
    assert "1 process (gloo)" in run.stdout  # the group was started
    V1, result1, log1 = finished(one_process)
    V, result, log = finished(tmp_path)
    for a, b in zip(V1, V):
        assert torch.equal(a, b)
    assert [r["loss"] for r in log] == [r["loss"] for r in log1]
    assert result["metrics"] == result1["metrics"] and result["world_size"] == 1


def test_a_query_set_smaller_than_the_processes_is_refused(tmp_path):
    # Each process encodes its share of the queries; with one query the second process would
    # have none and the first would wait for it at the gather (for the 30-minute timeout).
    root = list_dataset(str(tmp_path / "data"), 38, n_query=1)
    run = start(os.path.join(REPO, "flat_FLICKR.py"), "--data-root", root, "--output-dir", tmp_path / "run", *CPU,
                processes=2, timeout=120)
    assert run.returncode != 0
    assert "error: the query set (1 items) cannot be shared by 2 processes" in run.stderr
    assert "utils/" not in run.stderr  # no traceback of ours (torchrun prints its own for the failure)


def test_gpu_list_gets_the_torchrun_command():
    # The original's --gpu 0,1 (DataParallel): one line that names the torchrun command.
    run = start(os.path.join(REPO, "cascade_CIFAR-10.py"), "--gpu", "0,1", "--dataset", "digits")
    assert run.returncode != 0
    assert "torchrun --nproc_per_node 2 cascade_CIFAR-10.py" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


MMHH_NO_BATCHNORM = os.path.join(REPO, "tests", "scripts", "mmhh_no_batchnorm.py")


def mmhh_folders(out):
    """train_mmhh.py's output folders, all under out."""
    return ["--log_dir", out / "log", "--snap_path", out / "snap", "--test_output_dir", out / "test"]


def mmhh_log(folder):
    [run] = os.listdir(folder)
    with open(os.path.join(folder, run, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("setting", [
    ["--distance_type", "MMHH", "--batch_type", "BatchInitMem", "--batch_params", "3"],
    ["--distance_type", "Hamming", "--similar_weight_type", "auto"]], ids=["mmhh-memory", "hashnet-auto"])
def test_mmhh_two_processes_have_the_losses_of_one(tmp_path, setting):
    # Each process computes its half of the batch's rows against the whole batch (gathered,
    # gradients sent back) or against the memory bank, which sees every process's rows.
    # Catches a pair loss against the share only, an unweighted share, a similar weight or a
    # HashNet normaliser of the share, a memory updated with one process's rows.
    argv = ["--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "cpu", "--workers", "0", "--num_iters", 6,
            "--log_every", 1, *setting]
    logs, maps = [], []
    for processes in (None, 2):
        out = tmp_path / str(processes)
        run = start(MMHH_NO_BATCHNORM, *argv, *mmhh_folders(out), processes=processes)
        assert run.returncode == 0, why(run)
        logs.append(mmhh_log(out / "log"))
        maps.append(run.stdout.split("MAP@TopK (full ranking):")[1].split()[0])
    assert [r["iteration"] for r in logs[1]] == [r["iteration"] for r in logs[0]] == [1, 2, 3, 4, 5, 6]
    for one, two in zip(*logs):  # float summation order only: observed within 1e-6 relative
        for key in ("pair_loss", "quantization_loss", "loss", "similar_weight"):
            assert two[key] == pytest.approx(one[key], rel=1e-5)
    assert maps[0] == maps[1]


@pytest.mark.parametrize("gpu, processes", LAUNCHES)
def test_train_mmhh_runs_under_torchrun(tmp_path, gpu, processes):
    # The real script (batch norm: SyncBatchNorm on GPUs): one results file, from rank 0,
    # that records the world size, on the backend of the device.
    run = start(os.path.join(REPO, "train_mmhh.py"), "--s_dataset", "digits", "--preset", "smoke", "--gpu_id", gpu,
                "--workers", "0", *mmhh_folders(tmp_path), processes=processes)
    assert run.returncode == 0, why(run)
    assert ("(gloo)" if gpu == "cpu" else "(nccl)") in run.stdout
    [folder] = os.listdir(tmp_path / "log")
    [name] = os.listdir(tmp_path / "log" / folder / "results")
    with open(tmp_path / "log" / folder / "results" / name) as f:
        assert json.load(f)["world_size"] == processes
    assert len(mmhh_log(tmp_path / "log")) == 1  # smoke: 3 iterations, one log line, written once


def test_a_killed_mmhh_run_resumes_under_torchrun(tmp_path):
    # Batches of 400 (4 per epoch): rank 0 dies after the checkpoint of iteration 4; the
    # resumed two-process run must log what an uninterrupted one logs and end with its MAP.
    argv = ["--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "cpu", "--workers", "0", "--num_iters", 5,
            "--batch_size", 400, "--log_every", 1, "--distance_type", "MMHH"]
    runs = {}
    for name, env in (("whole", {}), ("cut", {"DIE_AFTER_ITERATION": "4"})):
        out = tmp_path / name
        folders = mmhh_folders(out)
        run = start(MMHH_NO_BATCHNORM, *argv, *folders, processes=2, env=env)
        if name == "cut":
            assert run.returncode != 0
            run = start(MMHH_NO_BATCHNORM, *argv, *folders, "--resume", processes=2)
        assert run.returncode == 0, why(run)
        runs[name] = (mmhh_log(out / "log"), run.stdout.split("MAP@TopK (full ranking):")[1].split()[0])
    (whole, whole_map), (cut, cut_map) = runs["whole"], runs["cut"]
    assert [r["iteration"] for r in cut] == list(range(1, 6))
    for a, b in zip(whole, cut):
        assert b["loss"] == a["loss"]
    assert cut_map == whole_map


# ------------------------------------------------------------------------- NCCL (GPUs)
# These run only where CUDA is; their tolerances allow for GPU kernels that are not
# bit-reproducible from run to run (atomics in convolution backward passes).

@pytest.mark.parametrize("processes", NCCL)
def test_nccl_processes_learn_what_one_gpu_process_learns(tmp_path, processes):
    # MAH on GPUs under NCCL: every collective's tensors must be on the process's GPU (NCCL
    # refuses CPU tensors), the group bound to its device. Catches U, V, losses or gathered
    # query codes left on the CPU, a process on another process's GPU.
    gpu = [*SMOKE, "--gpu", "0"]
    one = start(NO_BATCHNORM, *gpu, "--output-dir", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    run = start(NO_BATCHNORM, *gpu, "--output-dir", tmp_path / "nccl", processes=processes)
    assert run.returncode == 0, why(run)
    assert f"process{'es' if processes > 1 else ''} (nccl)" in run.stdout
    V1, result1, log1 = finished(tmp_path / "one")
    V, result, log = finished(tmp_path / "nccl")
    for a, b in zip(V1, V):
        assert (a == b).float().mean() >= 0.99  # a few signs may flip on float differences
    for a, b in zip(log1, log):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    assert result["world_size"] == processes
    assert result["metrics"]["map_tie_aware"] == pytest.approx(result1["metrics"]["map_tie_aware"], abs=0.02)


@pytest.mark.parametrize("processes", NCCL)
def test_nccl_mmhh_has_the_losses_of_one_gpu_process(tmp_path, processes):
    # MMHH on GPUs under NCCL with the memory bank: gathered outputs, labels and indices on
    # the GPU. Catches a gather of CPU tensors, a memory updated with one process's rows.
    argv = ["--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "0", "--workers", "0", "--num_iters", 6,
            "--log_every", 1, "--distance_type", "MMHH", "--batch_type", "BatchInitMem", "--batch_params", "3"]
    logs = []
    for launch in (None, processes):
        out = tmp_path / str(launch)
        run = start(MMHH_NO_BATCHNORM, *argv, *mmhh_folders(out), processes=launch)
        assert run.returncode == 0, why(run)
        logs.append(mmhh_log(out / "log"))
    assert "(nccl)" in run.stdout
    for one, many in zip(*logs):
        for key in ("pair_loss", "quantization_loss", "loss"):
            assert many[key] == pytest.approx(one[key], rel=1e-4)


def test_more_processes_than_gpus_get_one_line(monkeypatch):
    # torchrun --nproc_per_node 2 on a machine with one GPU: process 1 has no GPU of its own.
    # Catches a set-up that lets two processes share a GPU (NCCL then fails mid-run) or
    # ends in CUDA's "invalid device ordinal" traceback.
    from utils import distributed
    from utils.errors import UserError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(UserError, match="1 CUDA device.*use --nproc_per_node 1 or fewer"):
        distributed.setup("0")


def test_a_finished_body_waits_for_the_others_and_a_failed_one_does_not(monkeypatch):
    # The group goes only after every process is done (rank 0 evaluates and writes alone after
    # the last collective); a body that failed leaves at once, since the others would wait at
    # that barrier for the whole timeout. Catches a dropped final barrier, and one on the error path.
    from utils import distributed

    calls = []
    monkeypatch.setattr(distributed, "setup", lambda gpu: calls.append("setup") or "device")
    monkeypatch.setattr(distributed, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed, "cleanup", lambda: calls.append("cleanup"))
    with distributed.process_group("cpu") as device:
        assert device == "device"
    assert calls == ["setup", "barrier", "cleanup"]
    calls.clear()
    with pytest.raises(ValueError):
        with distributed.process_group("cpu"):
            raise ValueError
    assert calls == ["setup", "cleanup"]
