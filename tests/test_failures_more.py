"""More real-world failures, each through the command a user types: it works, or it stops with
one line, a non-zero exit and every earlier file unchanged."""
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from test_index import cli, trained  # noqa: F401 (the fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def index(trained, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("search") / "idx"
    code, _, err = cli("build", "--model", trained / "run", "--images", trained / "imgs", "--out", out, "--gpu", "cpu",
                       "--workers", 0)
    assert code in (0, None), err
    return out


def test_a_radius_above_the_code_length_returns_every_item_at_once(index):
    """12-bit codes, --radius 40: every one of the 40 items is within 12 of the query, so the
    answer is all of them, ranked as at radius 12, within a minute (in a process of its own,
    so that a hang fails the test). Catches the radius handed to FAISS as it is (its lookup
    then enumerates flips without end)."""
    command = [sys.executable, "-m", "utils.index", "search", "--index", str(index), "--item", "0", "--gpu", "cpu"]
    above = subprocess.run(command + ["--radius", "40"], cwd=REPO, capture_output=True, text=True, timeout=60)
    at_k = subprocess.run(command + ["--radius", "12"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert above.returncode == 0, above.stderr
    assert above.stdout == at_k.stdout and len(above.stdout.splitlines()) == 40


def test_show_never_writes_over_a_file(index, trained, tmp_path):  # noqa: F811
    """--show over an existing file, over the query image itself, or to a name that is not a
    .png: one line, exit 2, and the file as it was. Catches a photo replaced by the picture."""
    query = tmp_path / "me.png"
    query.write_bytes((trained / "imgs" / "a" / "00.png").read_bytes())
    before = sha(query)
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"keep me")
    for show, words in ((query, "is a query image that exists"), (taken, "is a file that exists"),
                        (tmp_path / "picture.jpg", "give a file name ending in .png")):
        code, _, err = cli("search", "--index", index, "--query", query, "--show", show, "--gpu", "cpu")
        assert code == 2 and len(err) == 1 and words in err[0] and "Traceback" not in err[0], err
    assert sha(query) == before and taken.read_bytes() == b"keep me"
    assert not os.path.exists(tmp_path / "picture.jpg")


def test_sigterm_takes_the_ctrl_c_path(tmp_path):
    """A scheduler's time limit (SIGTERM) mid-training: exit 130 and the one line that says where
    the run stopped and how to continue it, as Ctrl-C. Catches a silent exit 143."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "cascade_CIFAR-10.py", "--preset", "smoke", "--gpu", "cpu", "--dataset",
                             "digits", "--max-iter", "400", "--output-dir", str(out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not os.path.exists(out / "checkpoint.pt") and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("notice")]
    assert proc.returncode == 130, err
    assert lines[-1].startswith("interrupted in outer iteration") and f"--resume {out}" in lines[-1], err
    assert "Traceback" not in err


# A main that, in a C function's call back into Python (libc's qsort with a Python comparator,
# as numba's compiler calls back while the metrics compile), signals its own process, then
# reports its next step as a training loop does.
SIGNAL_IN_A_CALLBACK = """
import ctypes, os, signal, sys
from utils.errors import PROGRESS, run

def main(sig):
    PROGRESS.reset()
    PROGRESS.update(where="in step 1", resume="python again.py")
    libc = ctypes.CDLL(None)
    signalled = []

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
    def compare(a, b):
        if not signalled:
            signalled.append(1)
            os.kill(os.getpid(), sig)
        return a[0] - b[0]

    values = (ctypes.c_int * 4)(3, 1, 2, 0)
    libc.qsort(values, 4, ctypes.sizeof(ctypes.c_int), compare)
    print("the callback's interrupt was lost", flush=True)
    PROGRESS.update(where="in step 2")
    print("went on past the stop", flush=True)

run(main, getattr(signal, sys.argv[1]))
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_inside_a_c_callback_still_stops_the_run(name):
    """The signal's KeyboardInterrupt is raised inside the callback, where ctypes prints it and
    goes on (as it did in numba's compiler during a real run): the run stops at its next
    reported step, with Ctrl-C's line and status 130. Catches the stop lost there (the run
    went on to the end and exited 0)."""
    proc = subprocess.run([sys.executable, "-c", SIGNAL_IN_A_CALLBACK, name], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert "the callback's interrupt was lost" in proc.stdout, proc.stderr  # the case under test happened
    assert "went on past the stop" not in proc.stdout
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "interrupted in step 2; continue with: python again.py"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_loader_workers_ended_by_a_signal_are_one_line(tmp_path, sig):
    """SIGTERM to a whole process group (`timeout`, a scheduler, torchrun ending a run) also ends
    the DataLoader workers, and the loader raises "worker is killed by signal" when the main
    process notices first. The workers alone are ended here, so that the loader, not an
    interrupt, reports it: exit 130 and the one line that says how to continue, as for SIGTERM
    to the main process (unless the loader said only "exited unexpectedly", see below).
    SIGKILL (the out-of-memory killer's) is a failure: exit 1 and one line that names the
    likely cause and the resume command. Catches the loader's RuntimeError shown as a traceback,
    and a worker ended by SIGTERM, named so by the loader, reported as a failure."""
    from test_mah import list_dataset

    root = list_dataset(str(tmp_path / "data"), 80, style="hashnet")
    proc = subprocess.Popen([sys.executable, "train_mmhh.py", "--s_dataset", "coco_80", "--data_root", root,
                             "--preset", "smoke", "--gpu_id", "cpu", "--workers", "2", "--num_iters", "100000",
                             "--log_dir", str(tmp_path / "log"), "--snap_path", str(tmp_path / "snap"),
                             "--test_output_dir", str(tmp_path / "out")], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    workers, deadline = [], time.time() + 120
    while len(workers) < 2 and proc.poll() is None and time.time() < deadline:  # the loader's two workers
        time.sleep(0.2)
        with contextlib.suppress(FileNotFoundError):  # a thread that ended between the listing and the read
            workers = [int(pid) for task in os.listdir(f"/proc/{proc.pid}/task")
                       for pid in open(f"/proc/{proc.pid}/task/{task}/children").read().split()]
    assert len(workers) == 2, proc.stderr.read() if proc.poll() is not None else workers
    time.sleep(1)  # the main process waits on its workers' batches
    for pid in workers:
        os.kill(pid, sig)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("notice")]
    assert "Traceback" not in err
    # the loader names the signal when its SIGCHLD check sees the workers end first; when its
    # wait for a batch fails first, it says only "exited unexpectedly", which cannot tell a
    # stop from a crash and is reported as a failure
    if sig == signal.SIGTERM and "exited unexpectedly" not in err:
        assert proc.returncode == 130, err
        assert lines[-1].startswith("interrupted") and "--resume" in lines[-1], err
    else:
        assert proc.returncode == 1 and len(lines) == 1, err
        assert "DataLoader worker" in lines[0] and "out of memory" in lines[0], err
        assert "continue with: " in lines[0] and "--resume" in lines[0], err


def run_in_process(main, capsys):
    """errors.run(main) in the test's own process: (exit status, stderr). The signal handlers it
    installs and the stop it may mark are undone after."""
    from utils import errors

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with pytest.raises(SystemExit) as stop:
            errors.run(main)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        errors.PROGRESS.reset()
    return stop.value.code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("when, status", [("before", 130), ("after", 130), ("never", 1)])
def test_a_worker_death_that_a_stop_signal_follows_is_a_stop(when, status, capsys):
    """A signal to the process group ends the loader's workers and the run together, and the
    loader can notice a dead worker ("exited unexpectedly", which names no signal) before the
    run's handler has run: a SIGTERM that came before (its interrupt lost, only the mark left)
    or comes within the grace is a stop (130, the interrupted line, no traceback); none at all, a
    failure (1). Catches the grace wait dropped, which reports a stop as the machine out of memory."""
    from utils import errors

    def main():
        if when == "before":
            errors.PROGRESS.stopping = True
        elif when == "after":  # from another thread, as the kernel delivers it while the run goes on
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        raise RuntimeError("DataLoader worker (pid(s) 7) exited unexpectedly")

    code, err = run_in_process(main, capsys)
    assert code == status
    assert err.startswith("interrupted" if status == 130 else "error: DataLoader worker") and "\n" not in err, err


def test_a_second_test_of_one_annotation_does_not_replace_the_first(trained, tmp_path):  # noqa: F811
    """test_mmhh.py twice on one snapshot with one --annotation (the default test, then
    --opt-test): the second stops in one line before testing and the first results file is
    unchanged; --overwrite replaces it. Catches a results file replaced without a word."""
    from test_failures import entry

    snapshot = trained / "snap" / "empty_digits_digits_iter_00003"
    argv = ["--model_path", snapshot, "--gpu_id", "cpu", "--log_dir", tmp_path, "--annotation", "t"]
    monkeypatch = pytest.MonkeyPatch()
    try:
        assert entry("test_mmhh", *argv, monkeypatch=monkeypatch)[0] == 0
        (results,) = (tmp_path / "t" / "results").glob("digits_*_16bits.json")  # named by the snapshot's loss
        before = sha(results)
        code, _, err = entry("test_mmhh", *argv, "--opt-test", monkeypatch=monkeypatch)
        assert code == 2 and len(err) == 1 and "holds the results of an earlier test" in err[0], err
        assert sha(results) == before
        assert entry("test_mmhh", *argv, "--opt-test", "--overwrite", monkeypatch=monkeypatch)[0] == 0
        assert sha(results) != before
    finally:
        monkeypatch.undo()


def test_all_training_images_missing_under_drop_is_one_line_and_leaves_no_run(tmp_path):
    """HashNet lists whose training images are all gone, with --missing_images drop: one line
    naming the list and the fix, exit 2, and no run folder left (the rerun after the fix must
    not be refused). Catches the ZeroDivisionError of an empty training part."""
    from test_failures import entry
    from test_mah import list_dataset

    root = list_dataset(str(tmp_path / "data"), 80, style="hashnet")
    for f in os.listdir(os.path.join(root, "img")):
        if f.startswith("train_"):
            os.remove(os.path.join(root, "img", f))
    monkeypatch = pytest.MonkeyPatch()
    try:
        code, _, err = entry("train_mmhh", "--s_dataset", "coco_80", "--data_root", root, "--missing_images", "drop",
                             "--preset", "smoke", "--gpu_id", "cpu", "--workers", 0, "--log_dir", tmp_path / "log",
                             "--snap_path", tmp_path / "snap", "--test_output_dir", tmp_path / "out",
                             monkeypatch=monkeypatch)
    finally:
        monkeypatch.undo()
    assert code == 2 and len(err) == 1 and "train.txt: all 40 images listed there are missing" in err[0], err
    assert not os.path.exists(tmp_path / "log" / "empty_coco_80_coco_80")


@pytest.mark.parametrize("key, value", [("bits", [8]), ("gamma", 5.0), ("seed", 1)])
def test_a_hand_edited_run_record_is_refused_on_resume(tmp_path, key, value):
    """run.json of a MAH run edited after a checkpoint (bits 4 -> 8, gamma, seed): --resume stops
    in one line naming the field, and no file of the run changes. Catches the edited values obeyed
    (a 4-bit checkpoint discarded for 8 bits, results recording a seed the split never had)."""
    from test_failures import checksums, entry

    out = tmp_path / "run"
    monkeypatch = pytest.MonkeyPatch()
    try:
        assert entry("cascade_CIFAR-10", "--preset", "smoke", "--gpu", "cpu", "--dataset", "digits", "--bits", 4,
                     "--output-dir", out, monkeypatch=monkeypatch)[0] == 0
        record = json.loads((out / "run.json").read_text())
        (out / "run.json").write_text(json.dumps({**record, key: value}))
        before = checksums(out)
        code, _, err = entry("cascade_CIFAR-10", "--resume", out, monkeypatch=monkeypatch)
    finally:
        monkeypatch.undo()
    assert code == 2 and len(err) == 1 and f"says {key} {value!r}, but the run's checkpoint" in err[0], err
    assert checksums(out) == before


def test_a_hand_edited_mmhh_run_record_is_refused_on_resume(tmp_path):
    """The same for train_mmhh.py: its lr edited in run.json after a checkpoint."""
    from test_failures import checksums, entry

    argv = ["--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "cpu", "--batch_size", 64, "--num_iters", 30,
            "--log_dir", tmp_path / "log", "--snap_path", tmp_path / "snap", "--test_output_dir", tmp_path / "out"]
    monkeypatch = pytest.MonkeyPatch()
    try:
        assert entry("train_mmhh", *argv, monkeypatch=monkeypatch)[0] == 0
        run = tmp_path / "log" / "empty_digits_digits"
        record = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**record, "lr": 0.5}))
        before = checksums(run)
        code, _, err = entry("train_mmhh", *argv, "--resume", monkeypatch=monkeypatch)
    finally:
        monkeypatch.undo()
    assert code == 2 and len(err) == 1 and "says lr 0.5, but the run's checkpoint" in err[0], err
    assert checksums(run) == before


def test_sixteen_bit_and_rotated_images_are_read_as_a_viewer_shows_them(tmp_path):
    """A 16-bit grey PNG at level 32896 (half of 65535 + 128) reads as grey 128, not white; a
    JPEG whose EXIF orientation says "rotate 90" (tag 6) reads upright, its width and height
    swapped. Catches convert("RGB") clipping 16-bit levels, and the orientation ignored."""
    import numpy as np
    from PIL import Image

    from utils.data.images import open_rgb

    grey = tmp_path / "grey16.png"
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(grey)
    assert Image.open(grey).mode.startswith("I")
    assert np.asarray(open_rgb(grey)).max() == 128 and np.asarray(open_rgb(grey)).min() == 128
    photo = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (200, 10, 10)).save(photo, exif=exif)
    assert Image.open(photo).size == (40, 20) and open_rgb(photo).size == (20, 40)


def test_the_index_encodes_a_sixteen_bit_image_as_its_eight_bit_twin(trained, tmp_path):  # noqa: F811
    """Through `python -m utils.index build`: a folder holding one digit as an 8-bit PNG and as a
    16-bit grey PNG of the same levels (x 257) gives the two the same code. Catches the index
    reading images its own way."""
    import numpy as np
    from PIL import Image

    digit = np.asarray(Image.open(trained / "imgs" / "a" / "00.png").convert("L"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(digit).convert("RGB").save(folder / "eight.png")
    Image.fromarray(digit.astype(np.uint16) * 257).save(folder / "sixteen.png")
    code, _, err = cli("build", "--model", trained / "run", "--images", folder, "--out", tmp_path / "idx", "--gpu",
                       "cpu", "--workers", 0)
    assert code in (0, None), err
    codes = np.load(tmp_path / "idx" / "codes.npy")
    names = json.loads((tmp_path / "idx" / "items.json").read_text())
    assert names == ["eight.png", "sixteen.png"] and (codes[0] == codes[1]).all()


def test_an_image_listed_twice_is_one_line_naming_both_rows(tmp_path):
    """database_img.txt naming img/database_5.png again on its last line (as ./img/...): one line
    naming line 6 and line 41 of the list, exit 2, no run folder. Catches the second row accepted
    (one image counted twice in every ranking) or the rows named wrongly."""
    from test_failures import entry, one_error
    from test_mah import list_dataset

    root = list_dataset(str(tmp_path / "data"), 38)
    with open(os.path.join(root, "database_img.txt"), "a") as f:
        f.write("./img/database_5.png\n")
    with open(os.path.join(root, "database_label.txt"), "a") as f:
        f.write("1" + " 0" * 37 + "\n")
    monkeypatch = pytest.MonkeyPatch()
    try:
        code, _, err = entry("cascade_FLICKR", "--preset", "smoke", "--gpu", "cpu", "--data-root", root, "--workers", 0,
                             "--output-dir", tmp_path / "run", monkeypatch=monkeypatch)
    finally:
        monkeypatch.undo()
    one_error(code, err, f"{root}/database_img.txt:6 and {root}/database_img.txt:41 both list image",
              "remove one of the two lines")
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("dataset, first", [("coco_80", "notice: "), ("nuswide_81", "warning: ")])
def test_queries_that_are_database_items_are_one_line_with_their_count(tmp_path, capsys, dataset, first):
    """HashNet lists whose test.txt names 3 of the 10 database images (and 7 of its own): one
    line, '3 of the 10 queries'; for coco80 it says these are the published lists' own overlap
    (all 5,000 HashNet COCO queries are in its database), for nuswide81 it is a warning with
    the fix. The data still load. Catches the overlap accepted without a word, or miscounted."""
    from PIL import Image

    from utils.data.loader import load_data

    (tmp_path / "img").mkdir()
    for i in range(17):
        Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(tmp_path / "img" / f"{i}.png")
    row = {"coco_80": " 1" + " 0" * 79, "nuswide_81": " 1" + " 0" * 80}[dataset]
    lists = {"train": range(10), "database": range(10), "test": [2, 5, 7, *range(10, 17)]}
    for name, items in lists.items():
        (tmp_path / f"{name}.txt").write_text("".join(f"img/{i}.png{row}\n" for i in items))
    data = load_data(dataset, str(tmp_path))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(first + "3 of the 10 queries"), err
    assert f"({tmp_path}/test.txt) are also in the database ({tmp_path}/database.txt)" in err[0]
    assert ("HashNet's (and MMHH's) published MS-COCO lists" in err[0]) == (dataset == "coco_80")
    assert ("remove them from one list" in err[0]) == (dataset != "coco_80")
    assert len(data.query.labels) == 10 and len(data.database.labels) == 10


def test_the_report_refuses_a_map_in_percent_before_it_writes(tmp_path, capsys):
    """`python -m utils.report` over two seeds of one cell, one of them written in percent (MAP
    17.9, which averaged with 0.2 made a README cell of 9.05): exit 2, one line naming that
    file and the field, and the README, the details page and the figures folder untouched.
    Catches the file averaged in, or skipped with a 'skipped' line and exit 0 (a seed dropped)."""
    import runpy

    from test_failures import one_error
    from test_report import DETAILS, README, mah

    results = tmp_path / "results"
    (results / "s1").mkdir(parents=True)
    (results / "s0.json").write_text(json.dumps(mah("cifar10", "MAH-flat", 4, 0.2, 0.5, 60.0)))
    (results / "s1" / "percent.json").write_text(json.dumps({**mah("cifar10", "MAH-flat", 4, 17.9, 0.5, 60.0),
                                                             "seed": 1}))
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "results.md").write_text(DETAILS)
    argv = ["python -m utils.report", "--results", str(results), "--readme", str(tmp_path / "README.md"), "--details",
            str(tmp_path / "results.md"), "--fig", str(tmp_path / "fig")]
    monkeypatch = pytest.MonkeyPatch()
    try:
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as stop:
            runpy.run_module("utils.report", run_name="__main__")
    finally:
        monkeypatch.undo()
    out, err = capsys.readouterr()
    one_error(stop.value.code, err.splitlines(), f"results file {results}/s1/percent.json is no valid results record",
              "metrics 'map' is 17.9, outside [0, 1]", "nothing was written")
    assert out == "" and (tmp_path / "README.md").read_text() == README
    assert (tmp_path / "results.md").read_text() == DETAILS and not (tmp_path / "fig").exists()


def _cut_short(path):
    """Replace the PNG at `path` by the first half of a noise PNG: its header reads, its pixels do not."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path, format="PNG")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])


def test_a_run_stopped_by_a_truncated_image_leaves_nothing_and_reruns_once_fixed(tmp_path):
    """A database image cut short (its header reads, its pixels do not) stops the first epoch of
    cascade_FLICKR.py in one line naming the list line. A new folder is then gone; a folder that
    was there keeps the user's file and no run file; after the image is replaced the same command
    runs. Catches run.json and split.json left behind (the rerun was refused as 'holds another run')."""
    from test_failures import entry, one_error
    from test_mah import list_dataset

    root = list_dataset(str(tmp_path / "data"), 38)
    image = os.path.join(root, "img", "database_3.png")
    good = open(image, "rb").read()
    _cut_short(image)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine\n")
    argv = ["--preset", "smoke", "--gpu", "cpu", "--data-root", root, "--workers", 0]
    monkeypatch = pytest.MonkeyPatch()
    try:
        for out in (tmp_path / "run", tmp_path / "mine"):
            code, _, err = entry("cascade_FLICKR", *argv, "--output-dir", out, monkeypatch=monkeypatch)
            one_error(code, err, f"{root}/database_img.txt:4: cannot read image {image}")
        assert not (tmp_path / "run").exists()
        assert set(os.listdir(tmp_path / "mine")) - {".lock"} == {"notes.txt"}
        open(image, "wb").write(good)
        code, _, err = entry("cascade_FLICKR", *argv, "--output-dir", tmp_path / "run", monkeypatch=monkeypatch)
    finally:
        monkeypatch.undo()
    assert code == 0, err
    assert os.listdir(tmp_path / "run" / "results") == ["flickr25k_MAH-cascade_8bits.json"]


def test_train_mmhh_stopped_by_a_truncated_image_leaves_no_folder(tmp_path):
    """The same for train_mmhh.py (a training image of HashNet lists cut short): one line, and no
    log, snapshot or test-output folder left. Catches the MMHH main not undoing its start."""
    from test_failures import entry, mmhh_paths, one_error
    from test_mah import list_dataset

    root = list_dataset(str(tmp_path / "data"), 80, style="hashnet")
    _cut_short(os.path.join(root, "img", "train_7.png"))
    monkeypatch = pytest.MonkeyPatch()
    try:
        code, _, err = entry("train_mmhh", "--s_dataset", "coco_80", "--data_root", root, "--preset", "smoke",
                             "--gpu_id", "cpu", "--workers", 0, *mmhh_paths(tmp_path), monkeypatch=monkeypatch)
    finally:
        monkeypatch.undo()
    one_error(code, err, f"{root}/train.txt:8: cannot read image")
    assert os.listdir(tmp_path) == ["data"]


@pytest.mark.parametrize("part, count, words", [("test", 10, "the query set"), ("database", 40, "the database")])
def test_a_part_whose_images_are_all_missing_under_drop_is_named(tmp_path, part, count, words):
    """A MAH script with --missing-images drop over lists whose query (or database) images are
    all gone: one line naming the list file, the part it would leave empty and --image-root, and
    no run folder. Catches an empty part reaching the batch checks ('a batch of 0 items cannot be
    shared by 1 processes', 'the query set (0 items)')."""
    from test_failures import entry, one_error
    from test_mah import list_dataset

    root = list_dataset(str(tmp_path / "data"), 38)
    for name in os.listdir(os.path.join(root, "img")):
        if name.startswith(part + "_"):
            os.remove(os.path.join(root, "img", name))
    monkeypatch = pytest.MonkeyPatch()
    try:
        code, _, err = entry("cascade_FLICKR", "--preset", "smoke", "--gpu", "cpu", "--data-root", root,
                             "--missing-images", "drop", "--output-dir", tmp_path / "run", monkeypatch=monkeypatch)
    finally:
        monkeypatch.undo()
    one_error(code, err, f"{root}/{part}_img.txt: all {count} images listed there are missing",
              f"would leave {words} empty", "fix --image-root")
    assert not (tmp_path / "run").exists()


def _short_run(script, where):
    """(argv of a short run of `script` writing below `where`, its run folder, argv of its --resume)."""
    from test_failures import EPOCH_26, MAH, MMHH, mmhh_paths

    if script == "train_mmhh":
        argv = [*MMHH, *EPOCH_26, "--num_iters", "40", *mmhh_paths(where)]
        return argv, where / "log" / "empty_digits_digits", [*argv, "--resume"]
    return [*MAH, "--max-iter", "3", "--output-dir", where / "run"], where / "run", ["--resume", where / "run"]


@pytest.mark.parametrize("script", ["cascade_CIFAR-10", "train_mmhh"])
def test_resuming_a_truncated_checkpoint_says_so_and_how_to_go_on(tmp_path, script):
    """A killed run whose checkpoint.pt was then cut to half (a copy interrupted): --resume stops
    in one line saying the file is truncated or damaged, that the last state is lost, and to
    restore it or start again with --overwrite, and no file changes; the command with --overwrite
    then runs. Catches the checkpoint called 'not the checkpoint of the run'."""
    from test_failures import checksums, killed_run, entry, one_error

    argv, folder, resume = _short_run(script, tmp_path)
    monkeypatch = pytest.MonkeyPatch()
    try:
        assert killed_run(script, *argv, monkeypatch=monkeypatch)[0] == 130
        data = (folder / "checkpoint.pt").read_bytes()
        (folder / "checkpoint.pt").write_bytes(data[:len(data) // 2])
        before = checksums(tmp_path)
        code, _, err = entry(script, *resume, monkeypatch=monkeypatch)
        line = one_error(code, err, f"checkpoint {folder}/checkpoint.pt is truncated or damaged",
                         "last saved state is lost", "restore the file", "--overwrite")
        assert "not the checkpoint" not in line and checksums(tmp_path) == before
        assert entry(script, *argv, "--overwrite", monkeypatch=monkeypatch)[0] == 0
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("script", ["cascade_CIFAR-10", "train_mmhh"])
def test_resuming_a_run_on_a_read_only_mount_says_to_copy_it(tmp_path, script):
    """A killed run whose folders are then mounted read-only: --resume stops in one line naming
    the folder, 'Read-only file system' and the copy to make, not an option that was not given,
    and no file changes; the copy then resumes (MAH). Catches '--output-dir X cannot be written;
    choose a folder you can write' for a run whose folder the user never chose on this call."""
    import shutil

    from test_failures import checksums, entry, killed_run, one_error

    work = tmp_path / "w"
    argv, folder, resume = _short_run(script, work)
    if script == "train_mmhh":
        folder = folder.parent  # its --log_dir, checked first
    monkeypatch = pytest.MonkeyPatch()
    try:
        assert killed_run(script, *argv, monkeypatch=monkeypatch)[0] == 130
        before = checksums(work)
        mounted = False
        try:
            for command in (["mount", "--bind", work, work], ["mount", "-o", "remount,bind,ro", work]):
                done = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=30)
                if done.returncode:
                    pytest.skip(f"cannot mount read-only ({done.stderr.strip()}): needs root or CAP_SYS_ADMIN")
                mounted = True
            code, _, err = entry(script, *resume, monkeypatch=monkeypatch)
        finally:
            if mounted:
                subprocess.run(["umount", str(work)], timeout=30)
        line = one_error(code, err, f"{folder} cannot be written (Read-only file system)",
                         "copy the run to a place you can write and resume the copy")
        assert "--output-dir" not in line and "choose a folder" not in line and checksums(work) == before
        if script != "train_mmhh":
            shutil.copytree(folder, tmp_path / "copy")
            assert entry(script, "--resume", tmp_path / "copy", monkeypatch=monkeypatch)[0] == 0
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("message, context, status", [
    ("DataLoader worker (pid 7) is killed by signal: Terminated. ", None, 130),
    ("DataLoader worker (pid 7) is killed by signal: Interrupt. ", None, 130),
    ("DataLoader worker (pid(s) 7) exited unexpectedly", KeyboardInterrupt(), 130),
    ("DataLoader worker (pid 7) is killed by signal: Killed. ", None, 1),
    ("DataLoader worker (pid(s) 7) exited unexpectedly", None, 1)], ids=["TERM", "INT", "context", "KILL", "unknown"])
def test_what_a_loader_error_says_decides_stop_or_failure(message, context, status, capsys):
    """The loader's own messages, as errors.run receives them: a worker ended by SIGTERM or SIGINT,
    or any loader error raised while an interrupt unwinds, is a stop (130, the interrupted line);
    any other worker death is a failure (1, one error line). Catches either check dropped, or
    the two swapped, whichever way the real loader happened to report."""
    def main():
        try:
            if context is not None:
                raise context
        finally:
            raise RuntimeError(message)

    code, err = run_in_process(main, capsys)
    assert code == status
    assert err.startswith("interrupted" if status == 130 else "error: DataLoader worker") and "\n" not in err, err
