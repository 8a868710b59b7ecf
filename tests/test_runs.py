"""Run plumbing: writes that are interrupted leave the previous file whole."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from utils import runs
from utils.atomic import atomic_write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    """The writer raises after half of the new content: the old file is intact and no partial
    file is left beside it. Catches writing in place (the old file would be truncated)."""
    path = tmp_path / "results.json"
    path.write_text("old\n")

    def half_then_fail(f):
        f.write("new, but only ha")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(path), half_then_fail, mode="w")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["results.json"]


KILLED_WRITER = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import torch
from utils import runs

def killed(fd):  # the temporary holds every byte, the rename has not happened
    os.kill(os.getpid(), signal.SIGKILL)

os.fsync = killed
runs.save_checkpoint({path!r}, {{"iteration": 2, "model": {{"w": torch.zeros(100000)}}}})
"""


def test_a_checkpoint_write_killed_midway_keeps_the_previous_checkpoint(tmp_path):
    """A real SIGKILL once a 400 kB checkpoint has reached the disk under its temporary name:
    the previous checkpoint loads as it was (the temporary is what a resume removes: see
    test_failures). Catches checkpoints written in place."""
    path = str(tmp_path / "checkpoint.pt")
    runs.save_checkpoint(path, {"iteration": 1, "model": {"w": torch.ones(3)}})
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER.format(repo=REPO, path=path)], capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    partial = [name for name in os.listdir(tmp_path) if name != "checkpoint.pt"]
    assert len(partial) == 1 and os.path.getsize(tmp_path / partial[0]) > 100_000  # killed mid-write
    state = runs.load_checkpoint(path)
    assert state["iteration"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))


def test_results_json_is_replaced_whole(tmp_path):
    """write_json over an existing record leaves the new record, readable, and nothing else."""
    path = str(tmp_path / "r" / "x.json")
    runs.write_json(path, {"a": 1})
    runs.write_json(path, {"a": 2})
    assert json.load(open(path)) == {"a": 2} and os.listdir(tmp_path / "r") == ["x.json"]


def test_a_checkpoint_of_another_writer_is_refused_by_every_recorded_field(tmp_path):
    """A MAH-flat checkpoint of lengths 4,8 asked for as MAH-flat 4,8,16: the kind agrees, the
    lengths do not, and the message names both writers. Catches a check of the kind alone (a
    resume would load the heads of another network) and a check that ignores list values."""
    path = str(tmp_path / "checkpoint.pt")
    runs.save_checkpoint(path, {"model": {}, "written_by": {"kind": "MAH-flat", "lengths": [4, 8]}})
    ckpt = runs.load_checkpoint(path, {"kind": "MAH-flat"})
    runs.check_writer(ckpt, path, {"kind": "MAH-flat", "lengths": [4, 8]}, "start afresh")
    with pytest.raises(runs.UserError) as refused:
        runs.check_writer(ckpt, path, {"kind": "MAH-flat", "lengths": [4, 8, 16]}, "start afresh")
    assert str(refused.value) == (f"{path} holds MAH-flat, lengths 4,8, not MAH-flat, lengths 4,8,16: "
                                  "start afresh")
    with pytest.raises(runs.UserError, match="holds MAH-flat, lengths 4,8, not MAH-cascade: start afresh"):
        runs.load_checkpoint(path, {"kind": "MAH-cascade"}, "start afresh")


@pytest.mark.parametrize("device", [None, "cpu", "cuda"])
def test_a_bench_summary_names_the_code_and_the_machine(device, monkeypatch):
    """runs.provenance, the header of every bench's summary: the commit git itself names, the
    command, the cores, the versions; with a device its kind, and a GPU's name only for CUDA
    (faked here: no GPU is needed). Catches a CPU summary that names a GPU, a GPU's name
    dropped from the summary or the printed line, or the commit of another checkout."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU 80GB")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=runs.REPO, capture_output=True, text=True)
    found = runs.provenance(device)
    # outside a git checkout (a copy of the tree) there is no commit to name
    assert (found["commit"] or "").removesuffix("-dirty") == (head.stdout.strip() if head.returncode == 0 else "")
    assert found["command"].startswith("python ") and found["cores"] == os.cpu_count()
    assert found["torch"] == torch.__version__ and found["python"] == ".".join(map(str, sys.version_info[:3]))
    line = runs.described(found)
    assert line.startswith(f"torch {torch.__version__}, {os.cpu_count()} CPUs")
    if device is None:
        assert "device" not in found and "device" not in line
    elif device == "cpu":
        assert (found["device"], found["device_name"]) == ("cpu", None) and line.endswith(", device cpu")
    else:
        assert (found["device"], found["device_name"]) == ("cuda", "Fake GPU 80GB")
        assert line.endswith(", device cuda (Fake GPU 80GB)")
