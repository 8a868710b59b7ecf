"""Filing finished runs into results/ (python -m utils.report.filing): where each record goes,
and the runs it refuses, in one line and before anything is written."""
import fcntl
import json
import os
import subprocess
import sys
from argparse import Namespace

import pytest

from utils.errors import UserError
from utils.report import filing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAD = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


def record(method="ADSH", bits=4, seed=0, commit=HEAD, **extra):
    return {"dataset": "cifar10", "method": method, "bits": bits, "preset": "cpu-pretrained",
            "backbone": "mobilenet_v2", "seed": seed, "device": "cpu", "seconds": 260.0,
            "metrics": {"map": 0.5, "map_tie_aware": 0.5, "map_at_5000": 0.5, "precision_at_5000": 0.5},
            "command": f"python cascade_CIFAR-10.py --bits {bits} --adsh", "git_commit": commit,
            "threads": {"torch": 2}, **extra}


def run_folder(root, name, bits=(4,), records=None):
    """A MAH run folder whose run.json asks for `bits` and whose results hold `records`."""
    folder = root / name
    (folder / "results").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"kind": "MAH", "bits": list(bits)}))
    for r in records if records is not None else [record(bits=b) for b in bits]:
        (folder / "results" / f"cifar10_{r['method']}_{r['bits']}bits.json").write_text(json.dumps(r))
    return folder


def file(tmp_path, *runs, replace=False, failed=None):
    return filing.main(Namespace(runs=[str(r) for r in runs], results=str(tmp_path / "results"), replace=replace,
                                 failed=failed))


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(top, f), folder) for top, _, fs in os.walk(folder) for f in fs)


def test_a_finished_run_is_filed_by_cell_and_seed_unchanged(tmp_path):
    """Catches a record filed under another seed's folder, or altered on the way."""
    run = run_folder(tmp_path, "adsh", bits=(4, 8), records=[record(bits=4, seed=3), record(bits=8, seed=3)])
    file(tmp_path, run)
    assert files_under(tmp_path / "results") == ["cifar10-cpu-pretrained/seed3/cifar10_ADSH_4bits.json",
                                                 "cifar10-cpu-pretrained/seed3/cifar10_ADSH_8bits.json"]
    filed = json.load(open(tmp_path / "results/cifar10-cpu-pretrained/seed3/cifar10_ADSH_4bits.json"))
    assert filed == record(bits=4, seed=3)


def mmhh_record(gamma=10.0, weight="1", optimizer="adam", opt_test=False, **args):
    return {**record(method="MMHH", bits=32), "paper": "MMHH", "protocol": {"protocol": "deephash", "label_noise": 0.2},
            "args": {"batch_type": "PairBatch", "similar_weight_type": weight, "gamma": gamma, "optimizer": optimizer,
                     **args},
            "metrics": {"map_within_radius": 0.5, "radius": 2, "map_topk": 0.5, "topk": 5000, "opt_test": opt_test}}


def mmhh_folder(root, name, r):
    folder = root / name
    (folder / "results").mkdir(parents=True)
    (folder / "results" / "cifar10_MMHH_32bits.json").write_text(json.dumps(r))
    return folder


def test_mmhh_records_go_under_their_setting_configuration_and_convention(tmp_path):
    """Catches the memory bank, the similar-pair weight, gamma or the test convention dropped from
    the path (two cells would share one file)."""
    file(tmp_path, mmhh_folder(tmp_path, "test_run", mmhh_record(opt_test=True, batch_type="BatchInitMem")))
    assert files_under(tmp_path / "results") == [
        "cifar10-mmhh-cpu-pretrained/noise0.2/seed0/MMHH-memory-sw1-gamma10.0/opt-test/cifar10_MMHH_32bits.json"]


def test_one_loss_under_other_settings_or_the_released_optimiser_is_another_cell(tmp_path):
    """The same loss and seed with gamma 10 (say, untuned), gamma 5 (tuned) and gamma 5 under
    SGD are three cells, filed side by side; the same settings again are refused as filed.
    Catches cells keyed by the loss alone (the tuned run refused, or with --replace, the
    untuned one silently dropped) and the optimiser left out of the key."""
    runs = [mmhh_folder(tmp_path, "untuned", mmhh_record(10.0)), mmhh_folder(tmp_path, "tuned", mmhh_record(5.0)),
            mmhh_folder(tmp_path, "sgd", mmhh_record(5.0, optimizer="sgd"))]
    file(tmp_path, *runs)
    assert files_under(tmp_path / "results") == sorted(
        f"cifar10-mmhh-cpu-pretrained/noise0.2/seed0/{c}/cifar10_MMHH_32bits.json"
        for c in ("MMHH-sw1-gamma10.0", "MMHH-sw1-gamma5.0", "MMHH-sw1-gamma5.0-sgd"))
    with pytest.raises(UserError, match="already filed as .*MMHH-sw1-gamma5.0-sgd"):
        file(tmp_path, mmhh_folder(tmp_path, "again", mmhh_record(5.0, optimizer="sgd")))


def test_an_unfinished_or_running_run_is_refused(tmp_path):
    """A run whose --bits lengths have not all finished, one with no results, and one whose
    process still holds its lock. Catches a partial run filed as if it were whole."""
    partial = run_folder(tmp_path, "partial", bits=(4, 8), records=[record(bits=4)])
    with pytest.raises(UserError, match="no results for 8 bits yet"):
        file(tmp_path, partial)
    empty = run_folder(tmp_path, "empty", bits=(4,), records=[])
    with pytest.raises(UserError, match="has not finished"):
        file(tmp_path, empty)
    going = run_folder(tmp_path, "going")
    with open(going / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="still running"):
            file(tmp_path, going)
    assert not os.path.exists(tmp_path / "results")


@pytest.mark.parametrize("commit, reason", [("0" * 40, "not in this repository's history"),
                                            (HEAD + "-dirty", "uncommitted changes")])
def test_a_commit_outside_the_history_is_refused(tmp_path, commit, reason):
    """Catches a number filed whose code cannot be checked out."""
    run = run_folder(tmp_path, "foreign", records=[record(commit=commit)])
    with pytest.raises(UserError, match=reason):
        file(tmp_path, run)


def test_a_filed_cell_is_refused_unless_replaced_and_the_replacement_is_reported(tmp_path, capsys):
    """Filing a second run of one cell and seed: refused; with --replace the old record goes, the
    output names it, and the new record keeps what the old one said under "replaces". Catches two
    records of one cell (the report would keep whichever sorts last), a silent replacement, and
    the replaced run's numbers lost."""
    file(tmp_path, run_folder(tmp_path, "first"))
    again = run_folder(tmp_path, "second", records=[{**record(), "seconds": 999.0}])
    with pytest.raises(UserError, match="already filed as .*seed0/cifar10_ADSH_4bits.json"):
        file(tmp_path, again)
    capsys.readouterr()
    file(tmp_path, again, replace=True)
    assert "replaced" in capsys.readouterr().out
    filed = json.load(open(tmp_path / "results/cifar10-cpu-pretrained/seed0/cifar10_ADSH_4bits.json"))
    assert filed["seconds"] == 999
    # the replaced run's commit, command and numbers stay with its replacement (a rerun's difference is reported)
    assert filed["replaces"] == {"git_commit": HEAD, "command": "python cascade_CIFAR-10.py --bits 4 --adsh",
                                 "metrics": {"map": 0.5, "map_tie_aware": 0.5, "map_at_5000": 0.5,
                                             "precision_at_5000": 0.5}}


def test_a_run_of_a_filed_cell_on_a_gpu_is_filed_beside_the_cpu_run(tmp_path):
    """The same cell and seed on a GPU: filed under the series named by the device, the CPU record
    left as it was (MAH and MMHH alike). Catches the device left out of the path, where the GPU run
    would take the CPU run's file."""
    gpu = {"device": "NVIDIA H100 80GB HBM3"}
    file(tmp_path, run_folder(tmp_path, "cpu"), mmhh_folder(tmp_path, "mmhh_cpu", mmhh_record()))
    file(tmp_path, run_folder(tmp_path, "gpu", records=[{**record(), **gpu}]),
         mmhh_folder(tmp_path, "mmhh_gpu", {**mmhh_record(), **gpu}))
    assert files_under(tmp_path / "results") == [
        "cifar10-cpu-pretrained-nvidia-h100-80gb-hbm3/seed0/cifar10_ADSH_4bits.json",
        "cifar10-cpu-pretrained/seed0/cifar10_ADSH_4bits.json",
        "cifar10-mmhh-cpu-pretrained-nvidia-h100-80gb-hbm3/noise0.2/seed0/MMHH-sw1-gamma10.0/cifar10_MMHH_32bits.json",
        "cifar10-mmhh-cpu-pretrained/noise0.2/seed0/MMHH-sw1-gamma10.0/cifar10_MMHH_32bits.json"]
    assert json.load(open(tmp_path / "results/cifar10-cpu-pretrained/seed0/cifar10_ADSH_4bits.json")) == record()


def test_a_record_whose_file_holds_another_cell_is_refused(tmp_path):
    """A run with another --backbone under the same preset is another cell that the path does not
    name: refused in one line, the filed record left as it was; two such records in one call are
    refused before either is written. Catches a record silently written over another cell's."""
    file(tmp_path, run_folder(tmp_path, "filed"))
    resnet = run_folder(tmp_path, "resnet", records=[record(backbone="resnet18")])
    with pytest.raises(UserError, match="already holds another run's record"):
        file(tmp_path, resnet)
    assert json.load(open(tmp_path / "results/cifar10-cpu-pretrained/seed0/cifar10_ADSH_4bits.json")) == record()
    vgg = run_folder(tmp_path, "vgg", records=[record(seed=1, backbone="vgg11")])
    alexnet = run_folder(tmp_path, "alexnet", records=[record(seed=1, backbone="alexnet")])
    with pytest.raises(UserError, match="would both be filed as"):
        file(tmp_path, vgg, alexnet)
    assert files_under(tmp_path / "results") == ["cifar10-cpu-pretrained/seed0/cifar10_ADSH_4bits.json"]


def test_one_bad_run_files_nothing(tmp_path):
    """Every run is checked before anything is written. Catches the good run of a batch filed
    before the bad one stops the call."""
    good, bad = run_folder(tmp_path, "good"), run_folder(tmp_path, "bad", records=[record(bits=8, commit="0" * 40)],
                                                          bits=(8,))
    with pytest.raises(UserError):
        file(tmp_path, good, bad)
    assert not os.path.exists(tmp_path / "results")


def test_the_command_fails_in_one_line(tmp_path):
    partial = run_folder(tmp_path, "partial", bits=(4, 8), records=[record(bits=4)])
    done = subprocess.run([sys.executable, "-m", "utils.report.filing", str(partial), "--results",
                           str(tmp_path / "results")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("loss, main", [("MMHH", "gamma10"), ("Hamming", "sigmoid0.3125")])
def test_tuning_runs_are_filed_apart_by_configuration(tmp_path, loss, main):
    """Catches a validation record filed among the test cells (where the report would table it),
    or two grid points of one loss landing on one cell (the second refused as a duplicate)."""
    def tuning(gamma, weight):
        return {**record(method=loss, bits=32), "paper": "MMHH", "protocol": {"eval_on": "val"},
                "args": {"batch_type": "PairBatch", "similar_weight_type": weight, "gamma": gamma,
                         "sigmoid_param": 0.3125 if gamma == 10 else 0.625, "eval_on": "val"},
                "metrics": {"map_within_radius": 0.5, "radius": 2, "map_topk": 0.5, "topk": 5000, "opt_test": False}}
    folders = []
    for name, gamma, weight in (("a", 10, "1"), ("b", 20, "auto")):
        folder = tmp_path / name
        (folder / "results").mkdir(parents=True)
        (folder / "results" / f"cifar10_{loss}_32bits_val.json").write_text(json.dumps(tuning(gamma, weight)))
        folders.append(folder)
    file(tmp_path, *folders)
    other = "gamma20" if loss == "MMHH" else "sigmoid0.625"
    assert files_under(tmp_path / "results") == [
        f"cifar10-mmhh-cpu-pretrained/tuning/seed0/{loss}-sw1-{main}/cifar10_{loss}_32bits_val.json",
        f"cifar10-mmhh-cpu-pretrained/tuning/seed0/{loss}-swauto-{other}/cifar10_{loss}_32bits_val.json"]


def test_an_absolute_test_output_is_filed_relative_to_the_run_checkout(tmp_path):
    """A record naming its test output by this machine's absolute path is filed with the path
    relative to the checkout the run ran in (outside any checkout: the folder's name; a relative
    path as it is). Catches the path filed as written, or made relative to this repository
    rather than the run's."""
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    runs = []
    for name, output in (("inside", str(checkout / "runs/a/test_output/a_iter_02000")),
                         ("outside", "/elsewhere/test_output/b_iter_02000"), ("relative", "runs/c/out")):
        folder = checkout / "runs" / name
        (folder / "results").mkdir(parents=True)
        mmhh = {**record(method="MMHH", bits=32, seed=len(runs)), "paper": "MMHH", "test_output": output,
                "metrics": {"map_within_radius": 0.5, "radius": 2, "map_topk": 0.5, "topk": 5000, "opt_test": False}}
        (folder / "results" / "cifar10_MMHH_32bits.json").write_text(json.dumps(mmhh))
        runs.append(folder)
    targets = file(tmp_path, *runs)
    assert [json.load(open(t))["test_output"] for t in targets] == ["runs/a/test_output/a_iter_02000",
                                                                      "b_iter_02000", "runs/c/out"]


def test_a_declared_run_that_failed_is_recorded_once_with_its_reason(tmp_path, monkeypatch, capsys):
    """A stopped ADSH run (runs/claims/adsh_4_s0: a checkpoint, no results) recorded with
    --failed: results/failures.jsonl gains its line, naming the run as the plan does (CIFAR-10,
    ADSH, 4 bits, seed 0), the reason, its folder, command and commit; the plan no longer lists
    it. Refused, each in one line and writing nothing: the same run again, a run with results, a
    folder the plan does not declare, an empty reason. Catches a failure recorded under the
    wrong run (it would stay in the plan), recorded twice, or recorded for a run that finished."""
    from utils.report import collect, failures, plan

    monkeypatch.setattr(filing, "worktree_of", lambda folder: str(tmp_path))
    monkeypatch.setattr(filing, "head_commit", lambda root: HEAD)
    (tmp_path / "results").mkdir()
    stopped = tmp_path / "runs" / "claims" / "adsh_4_s0"
    stopped.mkdir(parents=True)
    (stopped / "checkpoint.pt").write_bytes(b"")
    path = file(tmp_path, stopped, failed="NaN loss in outer iteration 7")
    [entry] = [json.loads(line) for line in open(path)]
    assert entry["run"] == {"kind": "mah", "dataset": "cifar10", "method": "ADSH", "bits": 4, "seed": 0}
    assert (entry["reason"], entry["folder"], entry["git_commit"]) == ("NaN loss in outer iteration 7",
                                                                      "runs/claims/adsh_4_s0", HEAD)
    assert entry["command"].startswith("python cascade_CIFAR-10.py ") and " --adsh" in entry["command"]
    assert "recorded as failed: runs/claims/adsh_4_s0" in capsys.readouterr().out
    records = collect.load_records(str(tmp_path / "results"))
    assert failures.failed(records["failed"], "mah") == {("cifar10", "ADSH", 4, 0): "NaN loss in outer iteration 7"}
    text = plan.plan(records, root=str(tmp_path))
    assert "# CIFAR-10, ADSH, 4 bits, seed 0" not in text and "# CIFAR-10, ADSH, 4 bits, seed 1\n" in text
    assert "; 1 failed and are not made again" in text.splitlines()[0]
    before = open(path).read()
    finished = run_folder(tmp_path / "runs" / "claims", "adsh_8_s0", bits=(8,))
    for folder, reason, words in [(stopped, "again", "recorded as failed already"),
                                  (finished, "x", "has results: it did not fail"),
                                  (tmp_path / "elsewhere", "x", "no run that the plan lists now"),
                                  (stopped, "  ", "needs the reason")]:
        folder.mkdir(parents=True, exist_ok=True)
        with pytest.raises(UserError, match=words):
            file(tmp_path, folder, failed=reason)
    assert open(path).read() == before


def test_a_failure_record_that_is_not_one_stops_the_report(tmp_path):
    """Catches a damaged results/failures.jsonl line skipped without a word (its run would be
    made again, or its seed counted as missing)."""
    from utils.report import failures

    assert failures.read(str(tmp_path)) == []
    (tmp_path / failures.FILE).write_text('{"run": {"kind": "mah", "dataset": "cifar10"}, "reason": "x"}\n')
    with pytest.raises(UserError, match="failures.jsonl line 1 is no failure record"):
        failures.read(str(tmp_path))
