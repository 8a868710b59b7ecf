"""The runs docs/claims.md declares that results/ does not hold yet: for each, the commands
that make it and the filing that takes it into results/, in the order of the plan (MAH's
runs, the MMHH tuning grids, then the MMHH final runs of every loss whose grid is complete).

    python -m utils.report.plan [--results DIR]

A 4- or 12-bit CIFAR-10 MAH or ADSH run counts only with its learning curve (--eval-every
5); one filed without it is listed again, its filing with --replace. The final runs of a
loss wait for its tuning grid on the data set (the choice is made on all 8 rows), and say
so. Each run prints as a comment naming it, then its commands, one per line; the whole is a
shell script that makes the runs one after another and stops at the first that fails:

    python -m utils.report.plan > plan.sh && bash plan.sh

The plan looks at the run folders the commands name, under --runs-from (the folder the
script runs in): a run stopped midway (its checkpoint there) is listed with --resume, and a
step whose results are there already (trained but not filed, or tested) is left out. So a
stopped script is continued by making the plan again and running it.
"""
import argparse
import glob
import json
import os
import shlex
from collections import namedtuple

from utils.errors import run
from utils.report import failures
from utils.report.claims import CIFAR_SEEDS, FLICKR_SEEDS, MMHH_BITS, MMHH_SEEDS, NOISE
from utils.report.collect import load_records, setting
from utils.report.grid import DATASETS, LOSSES, MAIN, WEIGHTS, chosen_rows, grid, optimiser, tuned
from utils.report.published import HEADLINE_PRESET, declared_regime
from utils.runs import REPO

CURVED = (4, 12)  # the CIFAR-10 lengths whose runs draw the learning curves of claim (e)
ARCHIVES = {"cifar10": "../shared/data/cifar10-jpeg.tar.gz", "flickr25k": "../shared/data/mirflickr25k-20k.tar"}
DROPPED = ("flickr25k",)  # the archive lacks some listed images: --missing-images drop
ITERATIONS = 2000  # preset cpu-pretrained's MMHH training length, which names the final snapshot
SCRIPTS = {"cifar10": "CIFAR-10", "flickr25k": "FLICKR"}
TAGS = {"ADSH": "adsh", "MAH-flat": "flat", "MAH-cascade": "cascade"}
NAMES = {"Hamming": "HashNet"}  # how run names call a loss where its --distance_type differs
FILING = "python -m utils.report.filing"

# a run the plan lists: the comment naming it, its commands, the run as results/failures.jsonl
# names it (utils.report.failures) and the run folder its training command writes
Planned = namedtuple("Planned", "label commands run folder")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=os.path.join(REPO, "results"),
                   help="the results folder (default: results/ in the repository)")
    p.add_argument("--runs-from", default=REPO, help="the folder the script runs in, where the run folders the "
                                                     "commands name are looked for (default: the repository)")
    return p


def mah_plan():
    """[(dataset, method, bits, seed)] of docs/claims.md's MAH table."""
    cells = [("cifar10", m, b, s) for b, n in CIFAR_SEEDS.items() for m in TAGS if m == "ADSH" or b < 48
             for s in range(n)]
    cells += [("flickr25k", m, b, s) for b, n in FLICKR_SEEDS.items() for m in ("MAH-flat", "MAH-cascade")
              for s in range(n)]
    return cells + [("flickr25k", "ADSH", b, s) for b in (4, 8, 12) for s in range(FLICKR_SEEDS[b])]


def data_flags(dataset, sep):
    """The data options of a data set, with `sep` between the words of an option (the MAH
    scripts write --data-root, train_mmhh.py --data_root)."""
    dropped = f" --missing{sep}images drop" if dataset in DROPPED else ""
    return f"--data{sep}root {ARCHIVES[dataset]}{dropped}"


def curved(dataset, bits):
    """Whether a MAH run keeps a learning curve (evaluates every 5 outer iterations)."""
    return dataset == "cifar10" and bits in CURVED


def mah_folder(dataset, method, bits, seed):
    return f"runs/claims/{'flickr-' if dataset == 'flickr25k' else ''}{TAGS[method]}_{bits}_s{seed}"


def mah_commands(dataset, method, bits, seed, replace):
    """One MAH script run (ADSH: the cascade script with --adsh) and its filing."""
    folder = mah_folder(dataset, method, bits, seed)
    script = f"{'flat' if method == 'MAH-flat' else 'cascade'}_{SCRIPTS[dataset]}.py"
    options = (" --adsh" if method == "ADSH" else "") + (" --eval-every 5" if curved(dataset, bits) else "")
    return [f"python {script} --preset {HEADLINE_PRESET} --gpu cpu {data_flags(dataset, '-')} --bits {bits} "
            f"--seed {seed}{options} --output-dir {folder}",
            f"{FILING} {folder}{' --replace' if replace else ''}"]


def mah_runs(records, failed=()):
    """Planned of each planned MAH run not filed (or filed without its curve), nor
    recorded in `failed` ((dataset, method, bits, seed) of the runs that failed)."""
    filed = {(r["dataset"], r["method"], r["bits"], r["seed"]): bool(r.get("curve")) for r in records
             if declared_regime(r)}
    out = []
    for dataset, method, bits, seed in mah_plan():
        key = (dataset, method, bits, seed)
        if key in failed or key in filed and (filed[key] or not curved(dataset, bits)):
            continue
        label = f"{DATASETS[dataset]}, {method}, {bits} bits, seed {seed}" + \
            (" (filed without its learning curve: run again)" if key in filed else "")
        run = {"kind": "mah", "dataset": dataset, "method": method, "bits": bits, "seed": seed}
        out.append(Planned(label, mah_commands(*key, replace=key in filed), run, mah_folder(*key)))
    return out


def loss_flags(method, row):
    """The train_mmhh.py options of grid row `row` (1 to 8) of a loss."""
    main, weight = MAIN[(row - 1) % len(MAIN)], WEIGHTS[(row - 1) // len(MAIN)]
    value = f"--sigmoid_param {main / MMHH_BITS:g}" if method == "Hamming" else f"--gamma {main:g}"
    return f"--distance_type {method} {value} --similar_weight {weight}"


def mmhh_train(dataset, annotation, folder, seed, flags):
    return (f"python train_mmhh.py --s_dataset {dataset} {data_flags(dataset, '_')} --preset {HEADLINE_PRESET} "
            f"--gpu_id cpu --radius 2 --test_sample_ratio 1 --loss_lambda 0.001 --log_dir {folder} "
            f"--snap_path {folder}/snap --test_output_dir {folder}/test_output --hash_bit {MMHH_BITS} "
            f"--seed {seed} --annotation {annotation} {flags}")


def tuning_runs(validation, failed=()):
    """Planned of each tuning run of the grids neither filed nor failed (`failed`: their
    (dataset, bits, method, row)): 8 rows per loss and data set, seed 0."""
    rows = grid(validation)
    out = []
    for dataset, shown in DATASETS.items():
        for method, name in LOSSES:
            for row in range(1, 2 * len(MAIN) + 1):
                if row in rows.get((dataset, MMHH_BITS), {}).get(method, {}) or \
                        (dataset, MMHH_BITS, method, row) in failed:
                    continue
                a = f"{dataset}-tune-{NAMES.get(method, method)}-{row}"
                folder = f"runs/tuning/{a}"
                out.append(Planned(f"{shown}, tuning, {name} row {row}",
                                   [mmhh_train(dataset, a, folder, 0, f"{loss_flags(method, row)} --eval_on val"),
                                    f"{FILING} {folder}/{a}_{dataset}_{dataset}"],
                                   {"kind": "tuning", "dataset": dataset, "bits": MMHH_BITS, "method": method,
                                    "row": row}, folder))
    return out


def final_settings(dataset):
    """[(optimiser, protocol, label noise, seeds, run name part, heading, options)] of the final
    runs on a data set (docs/claims.md, "Final runs")."""
    out = [("adam", "standard", 0.0, MMHH_SEEDS["adam"], "final", "clean", "")]
    if dataset == "cifar10":
        out += [("adam", "standard", rate, MMHH_SEEDS["adam"], f"noise{rate:g}-final", f"label noise {rate:g}",
                 f" --label_noise {rate:g}") for rate in NOISE]
        out.append(("adam", "unseen", 0.0, MMHH_SEEDS["adam"], "unseen-final", "unseen classes", " --protocol unseen"))
    return out + [("sgd", "standard", 0.0, MMHH_SEEDS["sgd"], "sgd-final", "clean, released optimiser",
                   " --optimizer sgd")]


def final_runs(finals, validation, failed=None):
    """Planned of each final run neither filed nor failed, both test conventions (the
    --opt-test one from the outputs the training run saved); and the lines saying which losses
    wait for a grid. `failed`: results/failures.jsonl's entries."""
    lost = failures.failed(failed or [], "final")
    chosen = chosen_rows(validation, failed or [])
    rows = grid(validation)
    filed = {(r["dataset"], optimiser(r), *setting(r), r["method"], r["seed"], r["metrics"]["opt_test"])
             for r in finals if r["bits"] == MMHH_BITS and declared_regime(r) and tuned(r, chosen)}
    out, waiting = [], []
    for dataset, shown in DATASETS.items():
        for method, name in LOSSES:
            row = chosen.get((dataset, MMHH_BITS, method))
            if row is None:
                done = len(rows.get((dataset, MMHH_BITS), {}).get(method, {}))
                waiting.append(f"{shown}, final runs of {name}: wait for its tuning grid ({done} of "
                               f"{2 * len(MAIN)} rows filed)")
                continue
            for opt, protocol, rate, seeds, what, heading, extra in final_settings(dataset):
                for seed in range(seeds):
                    have = [(dataset, opt, protocol, rate, method, seed, t) in filed for t in (False, True)]
                    if all(have) or (dataset, opt, protocol, rate, method, seed) in lost:
                        continue
                    a = f"{dataset}-{what}-{method}-s{seed}"
                    folder = f"runs/final/{a}"
                    snapshot = f"{folder}/snap/{a}_{dataset}_{dataset}_iter_{ITERATIONS:05d}"
                    run = {"kind": "final", "dataset": dataset, "optimiser": opt, "protocol": protocol,
                           "rate": rate, "method": method, "seed": seed}
                    out.append(Planned(f"{shown}, final run, {heading}, {name}, seed {seed}"
                                       + (" (one test convention is filed: run both, file with --replace)"
                                          if any(have) else ""),
                                       [mmhh_train(dataset, a, folder, seed, loss_flags(method, row) + extra),
                                        f"python test_mmhh.py --gpu_id cpu --opt-test --radius 2 --log_dir {folder} "
                                        f"--model_path {snapshot} --annotation {a}-opt --saved_outputs",
                                        f"{FILING} {folder}/{a}_{dataset}_{dataset} {folder}/{a}-opt"
                                        + (" --replace" if any(have) else "")], run, folder))
    return out, waiting


def remaining(records):
    """(runs still to make, runs declared) over MAH's table, the tuning grids and the final runs
    (a loss waiting for its grid counts all its final runs as still to make)."""
    runs, _ = pending({k: records.get(k, []) for k in ("mah", "tuned", "released", "validation", "failed")})
    chosen = chosen_rows(records.get("validation", []), records.get("failed", []))
    per_loss = {d: sum(f[3] for f in final_settings(d)) for d in DATASETS}
    unchosen = sum(per_loss[d] for d in DATASETS for m, _ in LOSSES if (d, MMHH_BITS, m) not in chosen)
    missing = len(runs) + unchosen
    declared = len(mah_plan()) + len(DATASETS) * len(LOSSES) * 2 * len(MAIN) + len(LOSSES) * sum(per_loss.values())
    return missing, declared


def finished(folder, curve):
    """Whether the run folder holds its results record (with its learning curve, where `curve`)."""
    found = sorted(glob.glob(os.path.join(folder, "results", "*.json")))
    if not found or not curve:
        return bool(found)
    try:
        with open(found[0]) as f:
            return bool(json.load(f).get("curve"))
    except (OSError, ValueError):
        return False


def continued(label, commands, root):
    """(label, commands) of a run as far as its folders under `root` show it made: the training
    left out where its results are there, or continued with --resume from its checkpoint; the
    --opt-test evaluation left out where its results are there. The filing command names the
    folders: the training run's, then the evaluation's."""
    folders = [w for w in shlex.split(commands[-1])[len(shlex.split(FILING)):] if w != "--replace"]
    train, rest = commands[0], commands[1:-1]
    words = shlex.split(train)
    run = os.path.join(root, folders[0])
    curve = "--eval-every" in words
    if finished(run, curve):
        train, label = None, label + " (trained: its results are in its folder)"
    elif os.path.exists(os.path.join(run, "checkpoint.pt")):
        train = train + " --resume" if words[1] == "train_mmhh.py" else f"python {words[1]} --resume {folders[0]}"
        label += " (stopped midway: resumed)"
    if rest and finished(os.path.join(root, folders[1]), False):
        rest = []
    return label, [c for c in [train, *rest, commands[-1]] if c]


def pending(records):
    """Planned of every run the plan lists (neither filed nor failed), MAH's, the tuning
    runs, then the final runs; and the lines saying which losses wait for a grid."""
    failed = records.get("failed", [])
    runs = mah_runs(records["mah"], failures.failed(failed, "mah")) + \
        tuning_runs(records["validation"], failures.failed(failed, "tuning"))
    finals, waiting = final_runs(records["tuned"] + records["released"], records["validation"], failed)
    return runs + finals, waiting


def plan(records, root=REPO):
    """The text main prints, from load_records' groups and the run folders under `root`."""
    failed = records.get("failed", [])
    runs, waiting = pending(records)
    runs = [continued(p.label, p.commands, root) for p in runs]
    lines = [f"# {len(runs)} runs declared in docs/claims.md are not in results/"
             + (f"; {len(failed)} failed and are not made again (results/failures.jsonl)" if failed else "")
             + (f"; {len(waiting)} groups of final runs wait for a tuning grid" if waiting else "")]
    lines += [f"# {w}" for w in waiting]
    lines += ["set -e  # the text is a shell script: one run after another, stopping at the first that fails"]
    for label, commands in runs:
        lines += ["", f"# {label}", *commands]
    return "\n".join(lines)


def declared(records):
    """{run folder: (run, training command)} of every run the plan lists now (neither filed nor
    failed), `run` naming it as results/failures.jsonl does (utils.report.failures)."""
    return {p.folder: (p.run, p.commands[0]) for p in pending(records)[0]}


def main(args):
    print(plan(load_records(args.results), args.runs_from))


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
