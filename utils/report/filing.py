"""File finished runs' results into results/, where `python -m utils.report` reads them.

    python -m utils.report.filing runs/claims/adsh_4_s0 [RUN ...] [--replace]

A run folder's results/*.json go to one place per cell and seed:
results/<dataset>-<preset>[-<device>]/[<setting>/]seed<S>/<file> for the MAH scripts and
results/<dataset>-mmhh-<preset>[-<device>]/<setting>/seed<S>/<configuration>/[opt-test/]<file>
for MMHH (<device>: a GPU's name, for a run not on the CPU; <setting>: standard, noise<P> or
unseen), and a tuning run's (tested on the validation split) to
results/<dataset>-mmhh-<preset>[-<device>]/tuning/seed<S>/<configuration>/<file>; the
configuration is named by its loss, its grid values and, other than Adam, its optimiser
(MMHH-sw1-gamma10.0, Hamming-swauto-sigmoid0.3125-sgd), so that runs of one loss under other
settings (a tuned and an untuned one, or the released optimiser's) are other cells. Records go
unchanged: each carries its command, commit and thread counts. Every run named is checked
before anything is written, and any of these refuses the whole call in one line: a run still
going (its lock held) or not finished (a --bits length without results), a record the report
could not read, a commit that is not in this repository's history (or a run from uncommitted
changes), a cell and seed that is already filed, and a record whose file is taken by another
cell's (one the path does not name: another --backbone under the same preset, say). --replace
replaces the filed record of the same cell and seed instead, says which, and keeps the replaced
record's commit, command and metrics in the new one under "replaces".

A declared run that failed (a crash, a NaN loss) is recorded as such instead, with the reason:

    python -m utils.report.filing --failed "NaN loss at iteration 812" runs/final/cifar10-sgd-final-DCH-s0

It goes to results/failures.jsonl (utils.report.failures): its seed drops out of its pairs, a
failed tuning row is never chosen, and the plan does not make it again. Refused in one line:
a folder that is no run the plan lists now, a run still going or that has results, a commit
outside the history, and a run already recorded.
"""
import argparse
import fcntl
import glob
import json
import os
import re
import subprocess

from utils.atomic import atomic_write
from utils.errors import UserError, run
from utils.report import failures
from utils.report.collect import load_records, validation
from utils.report.grid import optimiser
from utils.report.plan import declared
from utils.records import read_record
from utils.runs import LOCK, REPO, read_json, write_json

NEEDED = ("command", "git_commit", "threads")  # what makes a filed number re-derivable


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="finished run folders (a MAH script's --output-dir, a train_mmhh.py run "
                                           "folder under --log_dir, or a test_mmhh.py --log_dir/<annotation>)")
    p.add_argument("--results", default=os.path.join(REPO, "results"),
                   help="the results folder (default: results/ in the repository)")
    p.add_argument("--replace", action="store_true",
                   help="replace a filed record of the same cell and seed, and say so (default: off: refused)")
    p.add_argument("--failed", metavar="REASON",
                   help="record the runs named, declared runs that failed, as failed for this reason (default: off)")
    return p


def setting(record):
    """standard, noise<P> or unseen: the protocol a record ran under."""
    p = record.get("protocol") or {}
    if p.get("protocol") == "unseen":
        return "unseen"
    rate = float(p.get("label_noise", 0.0))
    return f"noise{rate:g}" if rate else "standard"


def variant(record):
    """The MMHH loss as its results folders name it (the memory bank adds -memory)."""
    memory = record.get("args", {}).get("batch_type") == "BatchInitMem"
    return record["method"] + ("-memory" if memory else "")


def configuration(record):
    """An MMHH run's settings as a folder name: the loss (variant), the similar-pair weight, the
    loss's own parameter (gamma; HashNet's sigmoid_param) and the optimiser where it is not Adam."""
    a = record.get("args", {})
    main = f"sigmoid{a.get('sigmoid_param')}" if record["method"] == "Hamming" else f"gamma{a.get('gamma')}"
    other = "" if optimiser(record) == "adam" else f"-{optimiser(record)}"
    return f"{variant(record)}-sw{a.get('similar_weight_type')}-{main}{other}"


def cell(kind, record):
    """What one filed record stands for: a table cell and a seed (MMHH: of one configuration)."""
    key = (kind, record["dataset"], record["method"], record["bits"], record["preset"], record["backbone"],
           record["device"], record["seed"], setting(record))
    if kind == "mmhh":
        tuning = ("tuning",) if validation(record) else ()
        return key + tuning + (configuration(record), bool(record["metrics"]["opt_test"]))
    return key


def device_tag(record):
    """'' for a run on the CPU, else '-' and the device's name in lower case, dashed: a cell run on
    a GPU is another series, filed beside the CPU's, never in its place."""
    return "" if record["device"] == "cpu" else "-" + re.sub(r"[^a-z0-9]+", "-", record["device"].lower()).strip("-")


def destination(results, kind, record):
    name = os.path.basename(record["_path"])
    if kind == "mah":
        where = [f"{record['dataset']}-{record['preset']}{device_tag(record)}"] + \
            ([setting(record)] if setting(record) != "standard" else [])
        return os.path.join(results, *where, f"seed{record['seed']}", name)
    series = f"{record['dataset']}-mmhh-{record['preset']}{device_tag(record)}"
    if validation(record):
        tuning = "tuning" if setting(record) == "standard" else f"tuning-{setting(record)}"
        where = [series, tuning, f"seed{record['seed']}", configuration(record)]
    else:
        where = [series, setting(record), f"seed{record['seed']}", configuration(record)]
    return os.path.join(results, *where, *(["opt-test"] if record["metrics"]["opt_test"] else []), name)


def running(folder):
    """Whether a run's process still holds the folder's lock."""
    path = os.path.join(folder, LOCK)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def in_history(commit):
    done = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=REPO, capture_output=True)
    return done.returncode == 0


def finished_records(folder):
    """(kind, record) of every results file of a finished run folder; UserError otherwise."""
    if not os.path.isdir(folder):
        raise UserError(f"{folder} is not a folder: give the run folder of a finished run")
    if running(folder):
        raise UserError(f"{folder} is still running (its lock is held): file it once it has finished")
    paths = sorted(glob.glob(os.path.join(folder, "results", "*.json")))
    if not paths:
        raise UserError(f"{folder} has no results/*.json: the run has not finished; continue it with its --resume "
                        "command, then file it")
    found = []
    for path in paths:
        try:
            kind, record = read_record(path)
        except ValueError as e:
            raise UserError(f"{path} is no usable results record ({e}); file the results of a run of this "
                            "project") from None
        missing = [key for key in NEEDED if not record.get(key)]
        if missing:
            raise UserError(f"{path} does not record its {', '.join(missing)}: a number that cannot be re-derived "
                            "is not filed")
        found.append((kind, {**record, "_path": path}))
    run_record = os.path.join(folder, "run.json")
    if os.path.exists(run_record) and read_json(run_record, "run record").get("kind") == "MAH":
        wanted = read_json(run_record, "run record", keys=("bits",))["bits"]
        missing = sorted(set(wanted) - {record["bits"] for _, record in found})
        if missing:
            raise UserError(f"{folder} has not finished: no results for {', '.join(map(str, missing))} bits yet; "
                            f"continue it with --resume {folder}, then file it")
    return found


def check_commit(record):
    commit, path = record["git_commit"], record["_path"]
    if commit.endswith("-dirty"):
        raise UserError(f"{path} ran from uncommitted changes ({commit}): its code is in no commit; run it again "
                        "from a committed state")
    if not in_history(commit):
        raise UserError(f"{path} ran at commit {commit}, which is not in this repository's history; file runs "
                        "of this repository's code")


def worktree_of(folder):
    """The root of the checkout a run folder lies in (the folder itself outside any)."""
    done = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=folder, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else os.path.abspath(folder)


def portable(record, folder):
    """The record with an absolute test_output (older train_mmhh.py wrote one) made relative to the
    checkout the run ran in, else cut to its folder's name: no filed record keeps one machine's
    layout."""
    path = record.get("test_output")
    if not isinstance(path, str) or not os.path.isabs(path):
        return record
    root = worktree_of(folder)
    inside = os.path.commonpath([os.path.abspath(path), root]) == root
    return {**record, "test_output": os.path.relpath(path, root) if inside else os.path.basename(path)}


def replaced(old):
    """What a record keeps of the record `old` it replaces: its commit, command and single-number
    metrics, so that a rerun's difference from the run it replaced can be reported (utils.report.claims)."""
    return {"git_commit": old.get("git_commit"), "command": old.get("command"),
            "metrics": {k: v for k, v in old["metrics"].items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)}}


def head_commit(root):
    """The commit the checkout `root` stands at ("unknown" outside a checkout)."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def failed_run(folder, pending, recorded, reason):
    """The failures.jsonl entry of a run folder that failed: the run as the plan names it, from
    `pending` (plan.declared); UserError for a folder that cannot be recorded (`recorded`: the
    folders of the failures recorded already)."""
    if not os.path.isdir(folder):
        raise UserError(f"{folder} is not a folder: give the run folder of the run that failed")
    if running(folder):
        raise UserError(f"{folder} is still running (its lock is held): record it only once it has stopped")
    if glob.glob(os.path.join(folder, "**", "results", "*.json"), recursive=True):
        raise UserError(f"{folder} has results: it did not fail; file it without --failed")
    root = worktree_of(folder)
    where = os.path.relpath(os.path.abspath(folder), root)
    # a train_mmhh.py run folder lies in the --log_dir the plan names
    if any(where == f or where.startswith(f + os.sep) for f in recorded):
        raise UserError(f"{folder}: this run is recorded as failed already")
    found = [f for f in pending if where == f or where.startswith(f + os.sep)]
    if not found:
        raise UserError(f"{folder} is no run that the plan lists now (python -m utils.report.plan): only a "
                        "declared run that is neither filed nor recorded is recorded as failed")
    run_, command = pending[found[0]]
    commit = head_commit(root)
    check_commit({"git_commit": commit, "_path": folder})
    return {"run": run_, "reason": reason, "folder": found[0], "command": command, "git_commit": commit}


def record_failures(args):
    """--failed: append the runs named to results/failures.jsonl, each checked first."""
    reason = args.failed.strip()
    if not reason:
        raise UserError("--failed needs the reason the run failed (a crash, a NaN loss at iteration N)")
    if args.replace:
        raise UserError("--replace replaces filed results; a failed run has none: leave it out with --failed")
    records = load_records(args.results)
    recorded = {e["folder"] for e in records["failed"]}
    pending, new = declared(records), []
    for folder in args.runs:
        entry = failed_run(folder, pending, recorded, reason)
        recorded.add(entry["folder"])  # the same run named twice
        new.append(entry)
    path = os.path.join(args.results, failures.FILE)
    before = open(path).read() if os.path.exists(path) else ""
    atomic_write(path, lambda f: f.write(before + "".join(json.dumps(e) + "\n" for e in new)), mode="w")
    for entry in new:
        print(f"recorded as failed: {entry['folder']} ({entry['reason']}) -> {path}")
    return path


def main(args):
    if args.failed is not None:
        return record_failures(args)
    filed = {}
    for path in sorted(glob.glob(os.path.join(args.results, "**", "*.json"), recursive=True)):
        try:
            kind, record = read_record(path)
        except ValueError:
            continue  # the report names what it cannot read; filing only needs the readable cells
        filed[cell(kind, record)] = path, record
    plan, seen, targets = [], {}, {}
    for folder in args.runs:  # everything is checked before anything is written
        for kind, record in finished_records(folder):
            check_commit(record)
            key = cell(kind, record)
            if key in seen:
                raise UserError(f"{record['_path']} and {seen[key]} are the same cell and seed: file one of them")
            seen[key] = record["_path"]
            old, old_record = filed.get(key, (None, None))
            if old and not args.replace:
                raise UserError(f"{record['_path']}: its cell and seed are already filed as {old}; give --replace "
                                "to replace that record")
            if old:
                record = {**record, "replaces": replaced(old_record)}
            target = destination(args.results, kind, record)
            # one file per cell and seed; a cell the path does not tell apart (another --backbone
            # under one preset) must not take the place of the one filed there
            if target in targets:
                raise UserError(f"{record['_path']} and {targets[target]} would both be filed as {target}: file them "
                                "into different results folders (--results DIR)")
            if os.path.exists(target) and not (old and os.path.samefile(target, old)):
                raise UserError(f"{record['_path']}: {target} already holds another run's record (of another cell, "
                                "or unreadable); file this run into another results folder (--results DIR)")
            targets[target] = record["_path"]
            plan.append((portable(record, folder), target, old))
    for record, target, old in plan:
        if old:
            os.remove(old)
            print(f"replaced {old}")
        source = record.pop("_path")
        write_json(target, record)
        print(f"filed {source} -> {target}")
    return [target for _, target, _ in plan]


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
