"""Run plumbing shared by the training scripts: device, run folder, logs, checkpoints, results."""
import functools
import json
import os
import shlex
import subprocess
import sys
import time

import torch

from utils.atomic import atomic_write
from utils.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def choose_device(gpu):
    """--gpu '1' -> cuda:1; 'cpu', or no CUDA at all -> the CPU (with a notice)."""
    if str(gpu).lower() == "cpu":
        return torch.device("cpu")
    if "," in str(gpu):  # the original's DataParallel spelling
        n = len(str(gpu).split(","))
        raise UserError(f"--gpu {gpu}: one process drives one GPU; for {n} GPUs run `torchrun --nproc_per_node {n} "
                        f"{os.path.basename(sys.argv[0])} ...` (README \"Several GPUs\")")
    if not str(gpu).isdigit():
        raise UserError(f"--gpu must be a CUDA device number or 'cpu', got {gpu!r}")
    if not torch.cuda.is_available():
        print(f"notice: no CUDA device, --gpu {gpu} ignored; running on the CPU", file=sys.stderr)
        return torch.device("cpu")
    if int(gpu) >= torch.cuda.device_count():
        raise UserError(f"--gpu {gpu}: there are {torch.cuda.device_count()} CUDA devices (0.."
                        f"{torch.cuda.device_count() - 1}); pick one of them or 'cpu'")
    return torch.device(f"cuda:{gpu}")


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


def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def write_json(path, record):
    """Write JSON atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(record, indent=1, sort_keys=True) + "\n"), mode="w")


def read_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{what} {path} is missing or unreadable ({type(e).__name__}); check the path")


def save_checkpoint(path, state):
    """torch.save atomically: a run killed while saving keeps its previous checkpoint."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"checkpoint {path} is unreadable ({type(e).__name__}); it is corrupt or not a "
                        "checkpoint of this project: start a new run instead of resuming")


class JsonLog:
    """One JSON object per line, appended and flushed as it comes (log.jsonl)."""

    def __init__(self, path):
        self.path = path

    def write(self, **record):
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


def default_output_dir(script):
    return os.path.join("runs", script, time.strftime("%Y%m%d-%H%M%S"))
