"""Run plumbing shared by the training scripts: device, run folder, logs, checkpoints, results."""
import contextlib
import fcntl
import functools
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import torch

from utils.atomic import atomic_write, remove_temporaries, write_failure
from utils.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def choose_device(gpu, option="--gpu"):
    """--gpu '1' -> cuda:1; 'cpu', or no CUDA at all -> the CPU (with a notice). option: the
    flag's name in messages (train_mmhh.py's is --gpu_id)."""
    check_device(gpu, option)
    if str(gpu).lower() == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        print(f"notice: no CUDA device, {option} {gpu} ignored; running on the CPU", file=sys.stderr)
        return torch.device("cpu")
    if int(gpu) >= torch.cuda.device_count():
        raise UserError(f"{option} {gpu}: there are {torch.cuda.device_count()} CUDA devices (0.."
                        f"{torch.cuda.device_count() - 1}); pick one of them or 'cpu'")
    return torch.device(f"cuda:{gpu}")


def check_device(gpu, option="--gpu"):
    """The spelling of --gpu alone (no CUDA needed), so a bad one fails before anything is made."""
    if "," in str(gpu):  # the original's DataParallel spelling
        n = len(str(gpu).split(","))
        raise UserError(f"{option} {gpu}: one process drives one GPU; for {n} GPUs run `torchrun --nproc_per_node "
                        f"{n} {os.path.basename(sys.argv[0])} ...` (docs/distributed.md)")
    if str(gpu).lower() != "cpu" and not str(gpu).isdigit():
        raise UserError(f"{option} must be a CUDA device number or 'cpu', got {gpu!r}")


@functools.lru_cache(maxsize=None)
def git_commit():
    """HEAD of the repository when first asked (so a run that spans a commit reports the code
    it started with), with "-dirty" when tracked files differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return (commit + ("-dirty" if status.stdout.strip() else "")) or None


def command_line():
    """The command that started this process, as it could be typed again."""
    return " ".join(["python", *map(shlex.quote, sys.argv)])


def provenance(device=None):
    """What a bench's summary says of the code and machine it measured: the commit, the
    command, the cores, Python's and torch's versions, and with a device its kind and name
    (None on the CPU)."""
    found = {"commit": git_commit(), "command": command_line(), "cores": os.cpu_count(),
             "python": platform.python_version(), "torch": torch.__version__}
    if device is not None:
        device = torch.device(device)
        found.update(device=device.type, device_name=device_name(device) if device.type == "cuda" else None)
    return found


def described(found):
    """A provenance() as the line a bench prints first: 'torch 2.14.1, 2 CPUs, device cpu'."""
    name = f" ({found['device_name']})" if found.get("device_name") else ""
    return f"torch {found['torch']}, {found['cores']} CPUs" + (f", device {found['device']}{name}"
                                                               if "device" in found else "")


def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def write_json(path, record):
    """Write JSON atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(record, indent=1, sort_keys=True) + "\n"), mode="w")


def read_json(path, what, keys=(), foreign=None):
    """A JSON object from `path`, with every one of `keys`; anything else is a UserError.
    foreign(record): the message for an object another writer made (checked before the keys,
    which such an object lacks), or None."""
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{what} {path} is missing or unreadable ({type(e).__name__}); check the path")
    refused = foreign(record) if foreign and isinstance(record, dict) else None
    if refused:
        raise UserError(refused)
    missing = [k for k in keys if k not in record] if isinstance(record, dict) else keys
    if not isinstance(record, dict) or missing:
        raise UserError(f"{what} {path} is not one this project wrote (no {', '.join(missing) or 'object'}); "
                        "check the path")
    return record


def save_checkpoint(path, state):
    """torch.save atomically: a run killed while saving keeps its previous checkpoint."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path, written_by=None, advice="start a new run instead of resuming", damaged=None):
    """A checkpoint or snapshot of this project, checked before any of its state is used:
    a dict with a model state and, for each key of `written_by` (e.g. {"kind": "MAH-flat",
    "lengths": [4, 8, 16], "backbone": "small"}), the value its writer recorded. advice: what
    the user should do instead, for the messages; damaged: what to do when the file cannot be
    read at all, where it is known to be the run's own (a copy cut short, a failing disk)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if damaged:
            raise UserError(f"checkpoint {path} is truncated or damaged and cannot be read ({type(e).__name__}): "
                            f"{damaged}") from None
        raise UserError(f"checkpoint {path} is unreadable ({type(e).__name__}); it is corrupt or not a "
                        f"checkpoint of this project: {advice}")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise UserError(f"{path} is not a checkpoint of this project (no model state): {advice}")
    check_writer(ckpt, path, written_by, advice)
    return ckpt


def check_writer(ckpt, path, written_by, advice):
    """A loaded checkpoint's recorded writer holds every value of `written_by` (see load_checkpoint)."""
    found = ckpt.get("written_by") or {}
    if written_by and any(found.get(k) != v for k, v in written_by.items()):
        raise UserError(f"{path} holds {describe_writer(found)}, not {describe_writer(written_by)}: {advice}")


def check_record(record_path, saved, ckpt_path, free, written_by):
    """The run's arguments are its checkpoint's: a run.json (`saved`) that disagrees with them in
    anything but the options in `free` (where the run computes, where its data is) was edited
    after the run started, and is refused rather than obeyed. A checkpoint that `written_by`
    (see load_checkpoint) did not write is refused first, as not the run's."""
    if not os.path.exists(ckpt_path):
        return
    advice = f"this is not the checkpoint of the run in {os.path.dirname(ckpt_path)}; start a new run in another folder"
    # the run's own file (atomic writes never leave half of one), cut short by a copy or a disk
    damaged = ("the run's last saved state is lost; restore the file from a copy, or start the run again with "
               "--overwrite (or in another folder)")
    kept = load_checkpoint(ckpt_path, written_by, advice, damaged).get("args") or {}
    for key in sorted(set(saved) & set(kept) - set(free)):
        if saved[key] != kept[key]:
            raise UserError(f"{record_path} says {key} {saved[key]!r}, but the run's checkpoint {kept[key]!r}: the "
                            "record was changed after the run started; restore it (the checkpoint holds the run's "
                            "arguments), or start a new run in another folder")


def describe_writer(fields):
    """{"kind": "MAH-flat", "lengths": [4, 8, 16]} -> 'MAH-flat, lengths 4,8,16'."""
    if not fields:
        return "a model of unknown kind"
    shown = [",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in fields.values()]
    return ", ".join([shown[0]] + [f"{k} {v}" for k, v in zip(list(fields)[1:], shown[1:])])


def load_state(module, state, path, advice):
    """module.load_state_dict(state); a state of another shape is a UserError naming `path`."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} does not fit this model ({first}): {advice}")


def check_finite(model, where, advice):
    """The parameters and buffers (batch-norm statistics) of `model` are all finite, or a
    UserError saying where they stopped being so and what to change."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"the model diverged: {name} is no longer finite {where}; {advice}")


class JsonLog:
    """One JSON object per line, appended and flushed as it comes (log.jsonl)."""

    def __init__(self, path):
        self.path = path

    def write(self, **record):
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
        except OSError as e:
            raise UserError(write_failure(self.path, e)) from None

    def records(self):
        """Every whole record of the log, in order (a line a killed write left half is skipped)."""
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            lines = [line for line in f]
        out = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def keep(self, wanted):
        """Rewrite the log (atomically) with only the records for which wanted(record) holds, and
        without a line a killed write left half: a resumed run cuts it back to its checkpoint."""
        if not os.path.exists(self.path):
            return
        kept = [json.dumps(record, sort_keys=True) + "\n" for record in self.records() if wanted(record)]
        atomic_write(self.path, lambda f: f.write("".join(kept)), mode="w")


def recorded_path(path):
    """A path as a results record keeps it: relative to the repository when inside it, else the
    folder's name, so that no record carries this machine's layout."""
    path = os.path.abspath(path)
    inside = os.path.commonpath([path, REPO]) == REPO
    return os.path.relpath(path, REPO) if inside else os.path.basename(path)


# What a run folder holds once a run has written to it (the lock file is not among them).
RUN_FILES = ("run.json", "split.json", "protocol.json", "log.jsonl", "checkpoint.pt", "results", "tensorboard")
LOCK = ".lock"


class RunFolder:
    """The folder of one run, held by an OS lock for as long as the run's process lives.

    claim() makes the folder (and says so in one line if it cannot), takes the lock (a second
    run on the folder stops at once), and refuses a folder that holds another run unless
    resuming or `overwrite`. The run then checks its inputs, and only start() removes anything:
    the old run's files under `overwrite`, temporaries of killed writes. A run that fails
    before start() leaves no folder it made behind, and so does a new run that fails (not by
    Ctrl-C) before it saved anything to continue from (see __exit__). The lock is flock(2) on
    `.lock`: the kernel drops it when the process ends, however it ends, so it never goes stale.

        with RunFolder(...) as folder:   # the lock is released on the way out
            with folder.starting():      # claim(), writable(), the input checks, start()
                ...
            ...                          # training
    """

    def __init__(self, path, option, resume=False, overwrite=False, resume_hint=None):
        self.path, self.option, self.resume, self.overwrite = path, option, resume, overwrite
        self.resume_hint = resume_hint  # how a user continues the run, for messages
        self.made, self.lock, self.started = [], None, False
        self.places, self.before = [], {}  # other folders the run writes to; what each held at start()

    def file(self, name):
        return os.path.join(self.path, name)

    def holds_run(self):
        return [name for name in RUN_FILES if os.path.exists(self.file(name))]

    def claim(self):
        self.made += make_folder(self.path, self.option)
        try:
            self.lock = open(self.file(LOCK), "a+")
        except OSError as e:
            raise self.unwritable(self.path, self.option, e) from None
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.lock.seek(0)
            holder = self.lock.read().strip() or "unknown"
            self.lock.close()
            self.lock = None
            raise UserError(f"{self.path} is in use by another run (process {holder}); wait for it to end, or use "
                            f"another {self.option}") from None
        self.lock.seek(0)
        self.lock.truncate()
        self.lock.write(f"{os.getpid()}\n")
        self.lock.flush()
        held = self.holds_run()
        if not self.resume and held and not self.overwrite:
            raise UserError(f"{self.path} holds another run ({', '.join(held)}): continue it with "
                            f"{self.resume_hint or '--resume'}, start afresh in another {self.option}, or add "
                            "--overwrite to replace it")
        return self

    def writable(self, folder, option):
        """Make `folder` (another place the run writes, e.g. a snapshot folder) and write a file
        there, so that it fails now rather than after training."""
        self.made += make_folder(folder, option)
        self.places.append(folder)
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            raise self.unwritable(folder, option, e) from None

    def unwritable(self, folder, option, error):
        """The one line for a folder of the run that cannot be written. A new run chooses another
        `option`; a resumed one has its folders from the run (the option may not have been given:
        a read-only mount, an archive), so the run is copied to a place that can be written."""
        if not self.resume:
            return UserError(f"{option} {folder} cannot be written ({error.strerror}); choose a folder you can write")
        what = "the run folder" if folder == self.path else f"the run's {option} folder"
        return UserError(f"{what} {folder} cannot be written ({error.strerror}), and a resumed run writes its "
                         "checkpoint, log and results there: copy the run to a place you can write and resume the "
                         "copy")

    def start(self):
        """Inputs are checked: clear an overwritten run's files and killed writes' temporaries."""
        if self.overwrite and not self.resume:
            for name in self.holds_run():
                if os.path.isdir(self.file(name)):
                    shutil.rmtree(self.file(name))
                else:
                    os.remove(self.file(name))
        for folder in (self.path, self.file("results")):
            remove_temporaries(folder)
        self.before = {place: set(os.listdir(place)) for place in (self.path, *self.places)}
        self.started = True

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        """Release the lock. A new run that failed after start() (an image that cannot be
        decoded, a full disk at its first checkpoint), not by Ctrl-C, before it saved anything
        to continue from is undone, so that the same command runs once the cause is fixed."""
        if isinstance(error, Exception) and self.started and not self.resume and not self.saved():
            self.undo()
        self.release()

    def added(self):
        """{folder: names it holds that it did not hold at start()}."""
        return {place: set(os.listdir(place)) - names for place, names in self.before.items()
                if os.path.isdir(place)}

    def saved(self):
        """Whether the run wrote anything to continue from or to keep: a checkpoint, results,
        or a file in another of its folders (a snapshot, test outputs)."""
        added = self.added()
        return bool(added.get(self.path, set()) & {"checkpoint.pt", "results"}) or \
            any(names for place, names in added.items() if place != self.path)

    def undo(self):
        """Remove what the run wrote to its folder since start() (run.json, split.json, the log),
        then the folders it made (see abandon); nothing that was there before."""
        for name in self.added().get(self.path, ()):
            path = self.file(name)
            with contextlib.suppress(OSError):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
        self.abandon()

    @contextlib.contextmanager
    def starting(self):
        """Around claim() and the input checks: an exception before start() removes the folders
        claim() and writable() made (nothing else: a folder that held anything stays)."""
        try:
            yield self
        except BaseException:
            if not self.started:
                self.abandon()
            raise

    def abandon(self):
        """A failed start: remove the folders this run made, innermost first, if they hold no
        more than the lock file; drop the lock."""
        for folder in reversed(self.made):
            with contextlib.suppress(OSError):
                if set(os.listdir(folder)) <= {LOCK}:
                    if os.path.exists(os.path.join(folder, LOCK)):
                        os.remove(os.path.join(folder, LOCK))
                    os.rmdir(folder)
        self.made = []
        self.release()

    def release(self):
        if self.lock is not None:
            self.lock.close()  # closing the file drops the lock
            self.lock = None


def make_folder(path, option):
    """os.makedirs(path) with a one-line error; returns the folders it made, outermost first."""
    made, head = [], os.path.abspath(path)
    while head and not os.path.exists(head):
        made.append(head)
        head = os.path.dirname(head)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        for folder in made:  # whatever part of it was made
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise UserError(f"{option} {path} cannot be made ({e.strerror}); choose a folder you can write") from None
    if not os.path.isdir(path):
        raise UserError(f"{option} {path} is not a folder; choose a folder you can write")
    return made[::-1]


def default_output_dir(script):
    return os.path.join("runs", script, time.strftime("%Y%m%d-%H%M%S"))
