"""Result tables and figures from the results files of the training scripts.

`python -m utils.report` reads every results/**/*.json (MAH and MMHH records, in sorted
path order) and rewrites, between marker comments:
- README.md, "results at a glance": the headline runs (preset cpu-pretrained) of each data
  set beside the published values, every cell the mean and half-range over its seeds, and
  the cascade-minus-flat (MAH) or MMHH-minus-HashNet-loss difference with the number of
  seeds in which it has the published (claimed) sign;
- docs/results.md: every group of runs (data set, preset, backbone, device, seed) in full,
  and the tables over seeds.
It draws fig/<DATASET>.png (MAH mAP@5000 against code length beside the published curves,
the original's "Precision@5K" being mAP@5000, and true precision@5000; mean and range over
the seeds of the headline runs), fig/<DATASET>_pr.png (precision against recall of the
Hamming ball, radius 0 to K, of the headline runs that recorded it) and, with --data
DATASET=ROOT, fig/<DATASET>_retrieval.png (the retrieval examples a run kept, with the
images read from ROOT). MAH tables lead with the tie-aware MAP, which does not depend on
the database order. Nothing depends on the clock, so a rerun on the same results leaves
every file byte-identical.
"""
import argparse
import glob
import json
import os
import sys

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from utils.atomic import atomic_write
from utils.cache import unpacked
from utils.data.cifar10 import load_cifar10
from utils.errors import UserError, run
from utils.records import read_record

NAMES = {"cifar10": "CIFAR-10", "nuswide21": "NUS-WIDE", "flickr25k": "FLICKR"}
FIGURES = {"cifar10": "CIFAR.png", "nuswide21": "NUSWIDE.png", "flickr25k": "FLICKR.png"}
RETRIEVAL_FIGURES = {d: f.replace(".png", "_retrieval.png") for d, f in FIGURES.items()}
PR_FIGURES = {d: f.replace(".png", "_pr.png") for d, f in FIGURES.items()}
# The preset of the headline runs: ImageNet weights, the papers' zero start, within a CPU's budget
HEADLINE_PRESET = "cpu-pretrained"
# The quantity each data set's headline MAH table compares with the paper: its table's MAP
# (CIFAR-10), or the mAP@5000 of its figures where it has no table
HEADLINE_METRIC = {"cifar10": ("map_tie_aware", "tie-aware MAP"), "flickr25k": ("map_at_5000", "mAP@5000"),
                   "nuswide21": ("map_at_5000", "mAP@5000")}
MAH_METHODS = ("MAH-flat", "MAH-cascade")
MMHH_METHODS = ("MMHH", "MMHH + memory", "Hamming")
LOSS_NAMES = {"MMHH": "MMHH loss", "MMHH + memory": "MMHH loss, memory bank", "Hamming": "HashNet loss"}
MAH_BITS = (4, 6, 8, 10, 12)
COLOURS = {"MAH-flat": "tab:blue", "MAH-cascade": "tab:orange"}
OPT_TEST = {True: "optimised (--opt-test)", False: "DeepHash/HashNet default"}

# MAP of the paper's table (ResNet-50); it gives none for NUS-WIDE or FLICKR.
PUBLISHED_MAP = {
    ("cifar10", "MAH-flat"): dict(zip(MAH_BITS, (0.4759, 0.8197, 0.9339, 0.9335, 0.9503))),
    ("cifar10", "MAH-cascade"): dict(zip(MAH_BITS, (0.7460, 0.8950, 0.9429, 0.9489, 0.9537))),
}
# The figures' "Precision@5K", read off by eye (approximate): the original's calc_topMap(..., 5000),
# i.e. mAP@5000, stored as "topkpre".
PUBLISHED_MAP5000 = {
    ("cifar10", "MAH-flat"): dict(zip(MAH_BITS, (0.50, 0.84, 0.93, 0.93, 0.955))),
    ("cifar10", "MAH-cascade"): dict(zip(MAH_BITS, (0.77, 0.88, 0.93, 0.94, 0.945))),
    ("nuswide21", "MAH-flat"): dict(zip(MAH_BITS, (0.76, 0.82, 0.83, 0.86, 0.86))),
    ("nuswide21", "MAH-cascade"): dict(zip(MAH_BITS, (0.845, 0.85, 0.87, 0.90, 0.91))),
    ("flickr25k", "MAH-flat"): dict(zip(MAH_BITS, (0.880, 0.898, 0.910, 0.916, 0.931))),
    ("flickr25k", "MAH-cascade"): dict(zip(MAH_BITS, (0.883, 0.901, 0.913, 0.908, 0.915))),
}

NO_RESULTS = {
    "mah": "No results yet: run a MAH script, e.g. `python cascade_CIFAR-10.py --preset cpu-small --gpu cpu "
           "--data-root DATA`, then `python -m utils.report`.",
    "mmhh": "No results yet: run `python train_mmhh.py`, then `python -m utils.report`.",
}


def get_args_parser():
    p = argparse.ArgumentParser(description="Rewrite the result tables of the README and docs/results.md and draw "
                                            "fig/*.png from the results JSON files")
    p.add_argument("--results", default="results", help="folder searched recursively for results *.json "
                                                        "(default: results)")
    p.add_argument("--readme", default="README.md", help="README whose results-at-a-glance section is rewritten "
                                                         "(default: README.md)")
    p.add_argument("--details", default=os.path.join("docs", "results.md"),
                   help="page whose full MAH and MMHH result sections are rewritten (default: docs/results.md)")
    p.add_argument("--fig", default="fig", help="folder of the figures (default: fig)")
    p.add_argument("--data", action="append", default=[], metavar="DATASET=ROOT",
                   help="where a data set's images are (the --data-root its runs read), to draw "
                        "fig/<DATASET>_retrieval.png; repeatable (default: none, no retrieval pictures)")
    return p


# ---------------------------------------------------------------------------- records

def load_records(folder):
    """{"mah": [...], "mmhh": [...], "protocols": [...]} of the usable records under `folder`, in
    sorted path order; every other file is one `skipped` line on stderr. Runs under label noise
    or unseen classes go to "protocols" (their own tables), the others to their paper's; an
    MMHH run with the memory bank is method "MMHH + memory"."""
    if not os.path.isdir(folder):
        raise UserError(f"results folder {folder} does not exist: give --results DIR, the folder holding the "
                        "results JSON files")
    records = {"mah": [], "mmhh": [], "protocols": []}
    for path in sorted(glob.glob(os.path.join(folder, "**", "*.json"), recursive=True)):
        try:
            kind, record = read_record(path)
        except ValueError as e:
            print(f"skipped {path}: {e}", file=sys.stderr)
            continue
        if kind == "mmhh" and record.get("args", {}).get("batch_type") == "BatchInitMem":
            record = {**record, "method": "MMHH + memory"}
        records["protocols" if setting(record) != ("standard", 0.0) else kind].append(record)
    return records


def setting(record):
    """(protocol, label noise) of a run: ("standard", 0.0) for the papers' own setting."""
    p = record.get("protocol") or {}
    return ("unseen" if p.get("protocol") == "unseen" else "standard", float(p.get("label_noise", 0.0)))


def groups_of(records):
    """{(dataset, preset, backbone, device, seed): {(method, bits): record}}."""
    groups = {}
    for r in records:
        # records come in sorted path order: of two runs for one table cell, the later file wins
        key = (r["dataset"], r["preset"], r["backbone"], r["device"], r["seed"])
        groups.setdefault(key, {})[r["method"], r["bits"]] = r
    return groups


# ---------------------------------------------------------------------------- tables

def name(dataset):
    return NAMES.get(dataset, dataset)


def ordered(runs, known):
    """The known methods always, in their order, then any other method present, sorted."""
    return list(known) + sorted({m for m, _ in runs} - set(known))


def heading(group):
    dataset, preset, backbone, device, seed = group
    return (f"**{name(dataset)}** (`{dataset}`): preset `{preset}`, backbone `{backbone}`, device `{device}`, "
            f"seed {seed}")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def command_of(record):
    """The record's command as it reproduces the run today: MMHH-loss runs from before
    --distance_type defaulted to Hamming (the released default) get the flag they relied on."""
    command = record.get("command")
    if (command and record.get("paper") == "MMHH" and record.get("args", {}).get("distance_type") == "MMHH"
            and "--distance_type" not in command and "--distance-type" not in command):
        return command + " --distance_type MMHH"
    return command


def commands(runs, methods, bits):
    """The commands behind the cells, by method then bits; one command may have filled several cells."""
    found = [command_of(runs[m, b]) for m in methods for b in bits if (m, b) in runs]
    unique = list(dict.fromkeys(c for c in found if c))
    if not unique:
        return ["Commands: none recorded (results files from before records carried their command)."]
    return ["Commands:", ""] + ["    " + c for c in unique]


def difference(record, published):
    if published is None:
        return "n/a"
    if record is None:
        return "no run"
    # + 0.0 turns the -0.0 of a tiny negative difference into 0.0, shown +0.0000
    return f"{round(record['metrics']['map_tie_aware'] - published, 4) + 0.0:+.4f}"


GROUPED = "‡"
GROUPED_NOTE = (f"{GROUPED} ran with the database in class-grouped order (before commit 33e91ba): its MAP with ties "
                "by index is biased upward and is no reproduction figure; its tie-aware MAP and the other rows do "
                "not depend on the order.")


def grouped(record):
    """Whether the run ranked a class-grouped database (records from before the seeded order)."""
    return record.get("database_order") != "seeded random"


def mah_table(group, runs):
    dataset = group[0]
    bits = sorted(set(MAH_BITS) | {b for _, b in runs})
    methods = ordered(runs, MAH_METHODS)
    rows = []
    for m in methods:
        got = [runs.get((m, b)) for b in bits]
        pub_map, pub_top = PUBLISHED_MAP.get((dataset, m), {}), PUBLISHED_MAP5000.get((dataset, m), {})

        def measured(cell):
            return ["no run" if r is None else cell(r) for r in got]

        def published(values, digits):
            return [f"{values[b]:.{digits}f}" if b in values else "n/a" for b in bits]

        rows += [[m, q] + cells for q, cells in (
            ("tie-aware MAP", measured(lambda r: f"{r['metrics']['map_tie_aware']:.4f}")),
            ("published MAP", published(pub_map, 4)),
            ("difference (tie-aware)", [difference(r, pub_map.get(b)) for r, b in zip(got, bits)]),
            ("MAP, ties by index", measured(lambda r: f"{r['metrics']['map']:.4f}" + GROUPED * grouped(r))),
            ("mAP@5000", measured(lambda r: f"{r['metrics']['map_at_5000']:.4f}")),
            ("published mAP@5000 (approx.)", published(pub_top, 3)),
            ("precision@5000", measured(lambda r: f"{r['metrics']['precision_at_5000']:.4f}")),
            ("auxiliary bits", measured(lambda r: ",".join(map(str, r.get("aux_bits", []))) or "not recorded")),
            ("minutes", measured(lambda r: f"{r['seconds'] / 60:.1f}")),
        )]
    header = ["method", "quantity"] + [f"{b} bits" for b in bits]
    note = [GROUPED_NOTE, ""] if any(grouped(r) for r in runs.values()) else []
    return "\n".join([heading(group), ""] + table(header, rows) + [""] + note + commands(runs, methods, bits))


def seed_tables(records):
    """Per (data set, preset, backbone, device): the tie-aware MAP of every (method, bits) run
    under two or more seeds, as mean, spread (max - min) and the values."""
    cells = {}
    for r in records:
        # one value per seed: of two runs for one cell, the later file wins, as in the tables
        key = (r["dataset"], r["preset"], r["backbone"], r["device"])
        cells.setdefault(key, {}).setdefault((r["method"], r["bits"]), {})[r["seed"]] = r["metrics"]["map_tie_aware"]
    out = []
    for (dataset, preset, backbone, device), runs in sorted(cells.items()):
        runs = {k: v for k, v in runs.items() if len(v) > 1}
        if not runs:
            continue
        methods = ordered(runs, MAH_METHODS)
        rows = []
        for (m, b), by_seed in sorted(runs.items(), key=lambda kv: (methods.index(kv[0][0]), kv[0][1])):
            values = [by_seed[k] for k in sorted(by_seed)]
            rows.append([m, str(b), ", ".join(map(str, sorted(by_seed))), f"{sum(values) / len(values):.4f}",
                         f"{max(values) - min(values):.4f}", ", ".join(f"{v:.4f}" for v in values)])
        out.append("\n".join([f"**{name(dataset)}** (`{dataset}`): preset `{preset}`, backbone `{backbone}`, device "
                              f"`{device}`, over seeds: tie-aware MAP", ""] + table(
            ["method", "bits", "seeds", "mean", "spread (max - min)", "per seed"], rows)))
    return out


def mmhh_setting(record):
    m = record["metrics"]
    return m["radius"], "the full ranking" if m["topk"] == -1 else f"the top {m['topk']}", OPT_TEST[m["opt_test"]]


def mmhh_table(group, runs):
    bits = sorted({b for _, b in runs})
    methods = [m for m in MMHH_METHODS if m != "MMHH + memory" or any(method == m for method, _ in runs)]
    methods += sorted({m for m, _ in runs} - set(methods))
    settings = sorted({mmhh_setting(r) for r in runs.values()})
    mixed = len(settings) > 1
    if mixed:
        about, radius = "evaluation settings differ between runs: each cell names its own", "r"
    else:
        radius, topk, opt = settings[0]
        about = (f"MAP@H<={radius} = MAP within Hamming radius {radius}, MAP@TopK over {topk}; "
                 f"test codes: {opt}")

    def score(r):
        cell = f"{r['metrics']['map_within_radius']:.4f} / {r['metrics']['map_topk']:.4f}"
        return cell + (" (H<={}, {}, {})".format(*mmhh_setting(r)) if mixed else "")

    rows = []
    for m in methods:
        got = [runs.get((m, b)) for b in bits]
        rows += [[m, f"MAP@H<={radius} / MAP@TopK"] + ["no run" if r is None else score(r) for r in got],
                 # test_mmhh.py records (they name their snapshot) time the test alone
                 [m, "minutes" + (" (test only)" if any(r and "snapshot" in r for r in got) else "")]
                 + ["no run" if r is None else f"{r['seconds'] / 60:.1f}" for r in got]]
    header = ["loss", "quantity"] + [f"{b} bits" for b in bits]
    return "\n".join([f"{heading(group)}; {about}", ""] + table(header, rows) + [""]
                     + commands(runs, methods, bits))


def mah_section(records):
    if not records:
        return NO_RESULTS["mah"]
    intro = ("Written by `python -m utils.report` from the results files; edits here are overwritten. "
             "Tie-aware MAP: the expected MAP over random orders of equal Hamming distances (it does not depend "
             "on the database order; the original's unstable sort over a shuffled database measured it in "
             "expectation). Published MAP: the paper's table (ResNet-50; CIFAR-10 only); difference = our "
             "tie-aware MAP - published MAP. mAP@5000 is what the original logged as \"TopK@Pre\" and its "
             "figures call \"Precision@5K\"; the published values are read off those figures (approximate). "
             "precision@5000 is the true precision of the first 5,000. Auxiliary bits: the lengths of heads 1 "
             "and 2. Every figure is from the last outer iteration.")
    return "\n\n".join([intro] + [mah_table(g, runs) for g, runs in sorted(groups_of(records).items())]
                       + seed_tables(records))


def mmhh_section(records):
    if not records:
        return NO_RESULTS["mmhh"]
    intro = ("Written by `python -m utils.report` from the results files; edits here are overwritten. "
             "Cells: MAP@H<=r / MAP@TopK.")
    # one table per test convention: a snapshot tested both ways gives two records of one cell
    tables = [(g, opt, runs) for opt in (False, True)
              for g, runs in groups_of([r for r in records if r["metrics"]["opt_test"] == opt]).items()]
    return "\n\n".join([intro] + [mmhh_table(g, runs) for g, _, runs in sorted(tables, key=lambda t: t[:2])])


# ------------------------------------------------------------------ over seeds, headline

def series_of(records):
    """{(dataset, preset, backbone, device): {(method, bits): {seed: record}}}; of two runs
    of one seed and cell, the later file wins, as in the tables."""
    series = {}
    for r in records:
        key = (r["dataset"], r["preset"], r["backbone"], r["device"])
        series.setdefault(key, {}).setdefault((r["method"], r["bits"]), {})[r["seed"]] = r
    return series


def headline(series, dataset):
    """The key of `dataset`'s headline series: preset cpu-pretrained when there is one, else
    any; the one with most runs (ties: the first in sorted order). None without runs."""
    mine = sorted(k for k in series if k[0] == dataset)
    best = [k for k in mine if k[1] == HEADLINE_PRESET] or mine
    return max(best, key=lambda k: sum(map(len, series[k].values()))) if best else None


def spread(values, digits=4):
    """'mean ± half-range (n)' of a cell's values over seeds; 'value (1)' for one seed."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1)"
    return f"{np.mean(values):.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f} ({len(values)})"


def regime(records):
    """The training regime of a headline series in words, from its records' arguments."""
    r = records[0]
    a = r.get("args", {})
    recipe = []
    if r.get("paper") == "MMHH" and "num_iters" in a:
        recipe.append(f"{a['num_iters']} iterations of {a['batch_size']} images")
    elif "max_iter" in a:
        recipe.append(f"{a['max_iter']} outer iterations x {a['epochs']} epoch{'s' * (a['epochs'] != 1)}")
    if "optimizer" in a and "lr" in a:
        recipe.append(f"{a['optimizer']} at lr {a['lr']:g}")
    return (f"{'ImageNet ' if a.get('pretrained') else ''}{r['backbone']}"
            f"{' at ' + str(a['crop']) + ' px' if 'crop' in a else ''}, preset `{r['preset']}`"
            f"{' (' + ', '.join(recipe) + ')' if recipe else ''}, device `{r['device']}`")


def mah_glance(dataset, cells):
    """The headline MAH table of one data set: published, ours over seeds, cascade - flat."""
    metric, quantity = HEADLINE_METRIC.get(dataset, ("map_tie_aware", "tie-aware MAP"))
    published = PUBLISHED_MAP if metric == "map_tie_aware" else PUBLISHED_MAP5000
    bits = sorted(set(MAH_BITS) | {b for _, b in cells})
    values = {cell: {seed: r["metrics"][metric] for seed, r in by_seed.items()} for cell, by_seed in cells.items()}
    rows = []
    for m in MAH_METHODS:
        pub = published.get((dataset, m), {})
        rows.append([f"{m}, published", *(f"{pub[b]:.4f}" if b in pub else "n/a" for b in bits)])
        rows.append([f"{m}, ours", *(spread(list(values[m, b].values())) if (m, b) in values else "no run"
                                     for b in bits)])
    differences, agreement = [], {}  # agreement: bits -> (seeds of the published sign, paired seeds)
    for b in bits:
        flat, cascade = values.get(("MAH-flat", b), {}), values.get(("MAH-cascade", b), {})
        pub = [published.get((dataset, m), {}).get(b) for m in MAH_METHODS]
        seeds = sorted(set(flat) & set(cascade))
        if not seeds:
            differences.append("no pair")
            continue
        d = [cascade[k] - flat[k] for k in seeds]
        cell = f"{np.mean(d):+.4f}"
        if None not in pub:
            agree = int(sum(holds(x, pub[1] - pub[0], metric) for x in d))
            cell += f", {'level' if level(pub[1] - pub[0], metric) else 'sign'} as published in {agree} of {len(seeds)}"
            agreement[b] = (agree, len(seeds), level(pub[1] - pub[0], metric))
        differences.append(cell)
    pub = [published.get((dataset, m), {}) for m in MAH_METHODS]
    rows.append(["cascade - flat, published", *(f"{pub[1][b] - pub[0][b]:+.4f}" if b in pub[0] and b in pub[1]
                                                 else "n/a" for b in bits)])
    rows.append(["cascade - flat, ours (mean over paired seeds)", *differences])
    source = "the paper's table (ResNet-50 at 224 px)" if metric == "map_tie_aware" else \
        "read off the paper's figure (approximate)"
    about = (f"**MAH, {name(dataset)}**: {quantity} (published: {source}). Ours: "
             f"{regime([r for by_seed in cells.values() for r in by_seed.values()])}; mean ± half-range (seeds).")
    return "\n".join([about, ""] + table(["", *(f"{b} bits" for b in bits)], rows) + ["", sign_summary(agreement)])


# Values read off a figure are good to about this much: a published difference smaller than it
# says "level", and so does one of ours
FIGURE_RESOLUTION = 0.01


def level(difference, metric):
    return metric != "map_tie_aware" and abs(difference) < FIGURE_RESOLUTION


def holds(ours, published, metric):
    """Whether our cascade - flat difference says what the published one says: the same sign,
    or, where the published values come from a figure and differ by less than it resolves,
    a difference as small."""
    return abs(ours) < FIGURE_RESOLUTION if level(published, metric) else np.sign(ours) == np.sign(published)


def sign_summary(agreement):
    """One sentence: at which lengths cascade - flat says what the paper says (its sign, or
    level where the paper's figure shows them level) in every seed, in some, in none.
    agreement: bits -> (seeds that agree, paired seeds, whether the paper shows them level)."""
    def lengths(bits):
        names = [str(b) for b in bits]
        return (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]) + " bits"

    sentences = []
    for is_level, claim in ((False, "Cascade minus flat has the published sign"),
                            (True, f"Cascade and flat are level (within {FIGURE_RESOLUTION:g}), as in the paper's "
                                   "figure,")):
        mine = {b: (k, n) for b, (k, n, lv) in agreement.items() if lv == is_level}
        every = [b for b, (k, n) in mine.items() if k == n]
        some = {}  # (agreeing, paired) -> the lengths with that count, one clause each
        for b, (k, n) in mine.items():
            if 0 < k < n:
                some.setdefault((k, n), []).append(b)
        none = [b for b, (k, n) in mine.items() if k == 0]
        parts = ([f"in every seed at {lengths(every)}"] if every else []) + \
            [f"in {k} of {n} seeds at {lengths(bits)}" for (k, n), bits in some.items()] + \
            ([f"in no seed at {lengths(none)}"] if none else [])
        if parts:
            sentences.append(f"{claim} " + "; ".join(parts) + ".")
    return " ".join(sentences) or "No length has runs of both architectures under one seed yet."


def mmhh_values(cells, keep, metric):
    """{(method, bits): {seed key: value}} of the records `keep` selects."""
    return {cell: {seed: r["metrics"][metric] for seed, r in by_seed.items() if keep(r)}
            for cell, by_seed in cells.items()}


MMHH_QUANTITIES = [("MAP@H<=2", lambda r: not r["metrics"]["opt_test"], "map_within_radius"),
                   ("MAP@H<=2, --opt-test", lambda r: r["metrics"]["opt_test"], "map_within_radius"),
                   ("MAP@TopK", lambda r: not r["metrics"]["opt_test"], "map_topk")]


def mmhh_glance(dataset, cells):
    """The headline MMHH table: MAP@H<=2 of each MMHH variant against HashNet's loss, under the
    default test conventions (MAP@TopK and the --opt-test conventions are in docs/results.md)."""
    bits = sorted({b for _, b in cells})
    methods = [m for m in MMHH_METHODS if any(method == m for method, _ in cells)]
    rows = []
    label, keep, metric = MMHH_QUANTITIES[0]
    values = mmhh_values(cells, keep, metric)
    for m in methods:
        rows.append([f"{label}, {LOSS_NAMES[m]}", *(spread(list(values[m, b].values())) if values.get((m, b))
                                                    else "no run" for b in bits)])
    for m in (m for m in methods if m != "Hamming"):
        cells_d = []
        for b in bits:
            a, h = values.get((m, b), {}), values.get(("Hamming", b), {})
            d = [a[k] - h[k] for k in sorted(set(a) & set(h))]
            cells_d.append(f"{np.mean(d):+.4f}, MMHH ahead in {sum(x > 0 for x in d)} of {len(d)}" if d else
                           "no pair")
        rows.append([f"{label}, {m} - HashNet", *cells_d])
    about = (f"**MMHH, {name(dataset)}**: the MMHH loss against HashNet's, one network (no published value; "
             "MAP@TopK, --opt-test: docs/results.md). "
             f"Ours: {regime([r for by_seed in cells.values() for r in by_seed.values()])}; mean ± half-range "
             "(seeds).")
    # how crowded the balls are tells a MAP@H<=2 near the share of relevant items from a ranking
    shares = [(b, percentages({m: balls_of(cells.get((m, b), {}), "ball_database_share") for m in methods}))
              for b in bits]
    notes = [f"{BALL_SHARE}, {b} bits: {p}." for b, p in shares if p]
    return "\n".join([about, ""] + table(["", *(f"{b} bits" for b in bits)], rows) + ([""] + notes if notes else []))


# ------------------------------------------------------------------ noise, unseen classes

def protocol_cells(records):
    """{(dataset, preset, backbone, device, bits): {(method, protocol, noise): {(seed, opt_test): record}}}."""
    cells = {}
    for r in records:
        key = (r["dataset"], r["preset"], r["backbone"], r["device"], r["bits"])
        seed = (r["seed"], r.get("metrics", {}).get("opt_test", False))
        cells.setdefault(key, {}).setdefault((r["method"], *setting(r)), {})[seed] = r
    return cells


# what the Hamming balls of the default test hold (results files with metrics "balls")
BALL_SHARE = "Radius-2 ball, mean share of the database"
BALL_QUANTITIES = [("share of queries with an empty ball", "empty_ball_share", 3),
                   ("items per ball, median", "ball_items_median", 0)]


def balls_of(by_seed, key):
    """`key` of what the balls hold, over the default-test records of one cell ({(seed,
    opt_test): record}); none from files without the statistics (utils.balls adds them)."""
    return [r["metrics"]["balls"][key] for (seed, opt), r in by_seed.items() if not opt and "balls" in r["metrics"]]


def ball_values(cells, method, setting_, key):
    """`key` of what the balls hold, over the seeds of `method` under `setting_` (protocol, rate)."""
    return balls_of(cells.get((method, *setting_), {}), key)


def percentages(values):
    """'MMHH loss 54%, HashNet loss 2%': each loss's mean over seeds; losses without values left out."""
    return ", ".join(f"{LOSS_NAMES[m]} {np.mean(v):.0%}" for m, v in values.items() if v)


def ball_rows(cells, methods, settings):
    """Rows of what the balls hold, per loss, one column per (protocol, rate) in `settings`;
    none where no run recorded it."""
    rows = []
    for label, key, digits in BALL_QUANTITIES:
        for m in methods:
            values = [ball_values(cells, m, c, key) for c in settings]
            if any(values):
                rows.append([f"{label}, {LOSS_NAMES.get(m, m)}", *(spread(v, digits) if v else "no run"
                                                                   for v in values)])
    return rows


def noise_curves(cells, metric="map_within_radius", opt_test=False):
    """{method: {rate: [values over seeds]}} of the standard-protocol MMHH runs, default test
    (or the --opt-test one)."""
    curves = {}
    for (m, protocol, rate), by_seed in cells.items():
        if protocol == "standard":
            values = [r["metrics"][metric] for (seed, opt), r in by_seed.items() if opt == opt_test]
            if values:
                curves.setdefault(m, {})[rate] = values
    return curves


def noise_tables(records):
    """Per data set and code length with runs under label noise: each loss's value at every
    rate, over seeds, and its mean relative to its own mean at rate 0."""
    out = []
    for key, cells in sorted(protocol_cells(records).items()):
        rates = sorted({rate for (_, protocol, rate) in cells if protocol == "standard"})
        if len(rates) < 2:
            continue
        methods = [m for m in MMHH_METHODS if any(c[0] == m for c in cells)]
        rows = []
        for label, keep, metric in MMHH_QUANTITIES:
            for m in methods:
                values = {rate: [r["metrics"][metric] for (seed, opt), r in cells.get((m, "standard", rate), {}).items()
                                 if keep(r)] for rate in rates}
                rows.append([f"{label}, {LOSS_NAMES[m]}", *(spread(values[p]) if values[p] else "no run"
                                                            for p in rates)])
                base = np.mean(values[0.0]) if values.get(0.0) else None
                rows.append([f"{label}, {LOSS_NAMES[m]}, relative to rate 0",
                             *(f"{np.mean(values[p]) / base:.3f}" if values[p] and base else "n/a" for p in rates)])
        rows += ball_rows(cells, methods, [("standard", p) for p in rates])
        dataset, preset, backbone, device, bits = key
        out.append("\n".join([f"**Label noise, {name(dataset)}**, {bits} bits: preset `{preset}`, backbone "
                              f"`{backbone}`, device `{device}`; mean ± half-range (seeds).", ""]
                             + table(["", *(f"rate {p:g}" for p in rates)], rows)))
    return out


def unseen_tables(records):
    """Per data set and code length with runs under unseen classes: each loss's values over seeds."""
    out = []
    for key, cells in sorted(protocol_cells(records).items()):
        unseen = {c: v for c, v in cells.items() if c[1] == "unseen"}
        if not unseen:
            continue
        rates = sorted({c[2] for c in unseen})
        methods = [m for m in MMHH_METHODS + MAH_METHODS if any(c[0] == m for c in unseen)]
        rows = []
        for m in methods:
            quantities = [("tie-aware MAP", lambda r: True, "map_tie_aware")] if m in MAH_METHODS else MMHH_QUANTITIES
            for label, keep, metric in quantities:
                values = {p: [r["metrics"][metric] for r in unseen.get((m, "unseen", p), {}).values() if keep(r)]
                          for p in rates}
                rows.append([f"{label}, {LOSS_NAMES.get(m, m)}", *(spread(values[p]) if values[p] else "no run"
                                                                   for p in rates)])
        rows += ball_rows(unseen, methods, [("unseen", p) for p in rates])
        dataset, preset, backbone, device, bits = key
        classes = next(iter(next(iter(unseen.values())).values())).get("protocol", {})
        out.append("\n".join([f"**Unseen classes, {name(dataset)}**, {bits} bits: preset `{preset}`, backbone "
                              f"`{backbone}`, device `{device}`, seen fraction {classes.get('seen_fraction', 0.75):g};"
                              " relevance on the unseen labels; mean ± half-range (seeds).", ""]
                             + table(["", *(f"label noise {p:g}" for p in rates)], rows)))
    return out


def paired_differences(cells, method, setting_):
    """MAP@H<=2 (default test) of `method` minus HashNet's loss's under `setting_` (protocol,
    rate), for each seed that has both."""
    mine, theirs = ({seed: r["metrics"]["map_within_radius"] for (seed, opt), r in cells.get((m, *setting_), {}).items()
                     if not opt} for m in (method, "Hamming"))
    return [mine[k] - theirs[k] for k in sorted(set(mine) & set(theirs))]


def ahead(d, where=""):
    """'mean difference{where}, ahead in n of m seeds' of paired differences `d`."""
    return f"{np.mean(d):+.4f}{where}, ahead in {sum(x > 0 for x in d)} of {len(d)} seeds"


def unseen_claims(records):
    """One sentence per data set and length with unseen-class runs: each MMHH variant's MAP@H<=2
    minus HashNet's loss's, paired by seed."""
    sentences = []
    for key, cells in sorted(protocol_cells(records).items()):
        parts = []
        for m in ("MMHH", "MMHH + memory"):
            d = paired_differences(cells, m, ("unseen", 0.0))
            if d:
                parts.append(f"{LOSS_NAMES[m]} {ahead(d)}")
        if parts:
            shares = percentages({m: ball_values(cells, m, ("unseen", 0.0), "ball_database_share")
                                  for m in MMHH_METHODS})
            sentences.append(f"Unseen classes ({name(key[0])}, {key[4]} bits): MAP@H<=2 minus HashNet's loss's: "
                             f"{'; '.join(parts)}." + (f" {BALL_SHARE}: {shares}." if shares else ""))
    return sentences


def noise_claims(records):
    """One paragraph per data set and length with noise runs, on the paper's two claims: how
    much of its rate-0 MAP@H<=2 each loss keeps at the highest rate (does the MMHH loss degrade
    less?), under both test conventions, since they differ in the queries whose ball is empty;
    and the MMHH loss against HashNet's at each noisy rate, seed by seed (is it higher?)."""
    sentences = []
    for key, cells in sorted(protocol_cells(records).items()):
        curves = noise_curves(cells)
        if "MMHH" not in curves or "Hamming" not in curves:
            continue
        rates = sorted(set(curves["MMHH"]) & set(curves["Hamming"]))
        if len(rates) < 2 or rates[0] != 0.0:
            continue
        top = rates[-1]
        verdicts = []
        for c in (curves, noise_curves(cells, opt_test=True)):
            kept = {m: np.mean(c[m][top]) / np.mean(c[m][0.0]) for m in MMHH_METHODS if 0.0 in c.get(m, {}) and
                    top in c[m]}
            if "MMHH" in kept and "Hamming" in kept:
                verdicts.append((kept, kept["MMHH"] > kept["Hamming"]))
        (default, less), *opt_test = verdicts  # the default test has both losses (checked above)
        shares = ", ".join(f"{LOSS_NAMES[m]} {v:.2f}" for m, v in default.items())
        verdict = "degrades less than HashNet's, as the paper claims" if less else \
            "does not degrade less than HashNet's, against the paper's claim"
        claims = (f"the share of its MAP@H<=2 at rate 0 that each loss keeps at rate {top:g} is {shares} under the "
                  f"default test, so the MMHH loss {verdict}")
        for kept, less in opt_test:
            values = ", ".join(f"{v:.2f}" if list(kept) == list(default) else f"{LOSS_NAMES[m]} {v:.2f}"
                               for m, v in kept.items())
            claims += (f"; under --opt-test, which leaves queries with an empty ball out, it is {values}, so it "
                       f"{'degrades less, as the paper claims' if less else 'does not degrade less, against the claim'}")
        differences, means = [], []
        for rate in rates[1:]:
            d = paired_differences(cells, "MMHH", ("standard", rate))
            if d:
                means.append(np.mean(d))
                differences.append(ahead(d, f" at rate {rate:g}"))
        superior = ("higher at every noisy rate, as the paper claims" if all(x > 0 for x in means) else
                    "lower at every noisy rate, against the paper's claim" if all(x < 0 for x in means) else
                    "higher at some noisy rates only")
        balls = percentages({m: ball_values(cells, m, ("standard", top), "empty_ball_share") for m in MMHH_METHODS})
        sentences.append(f"Label noise ({name(key[0])}, {key[4]} bits): {claims}. "
                         + (f"Its MAP@H<=2 minus HashNet's (default test): {'; '.join(differences)}; {superior}." if means
                            else "No seed has both losses at a noisy rate.")
                         + (f" Queries whose radius-2 ball is empty at rate {top:g}: {balls}." if balls else ""))
    return sentences


def protocols_section(records):
    parts = noise_tables(records) + unseen_tables(records)
    if not parts:
        return "No runs under label noise or unseen classes yet (docs/protocols.md)."
    return "\n\n".join(["Written by `python -m utils.report` from the results files; edits here are "
                         "overwritten. Runs under label noise or unseen classes (docs/protocols.md)."] + parts)


def draw_noise(path, dataset, records):
    """MAP@H<=2 against the label-noise rate, one line per loss, bars from the lowest to the
    highest seed; False (nothing drawn) without noise runs of `dataset`."""
    keys = [k for k, cells in protocol_cells(records).items() if k[0] == dataset and
            len({rate for (_, p, rate) in cells if p == "standard"}) > 1]
    if not keys:
        return False
    key = max(keys, key=lambda k: len(protocol_cells(records)[k]))
    curves = noise_curves(protocol_cells(records)[key])
    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for m in (m for m in MMHH_METHODS if m in curves):
        rates = sorted(curves[m])
        mean = np.array([np.mean(curves[m][p]) for p in rates])
        low, high = mean - [min(curves[m][p]) for p in rates], [max(curves[m][p]) for p in rates] - mean
        ax.errorbar(rates, mean, yerr=[low, high], fmt="-o", capsize=3, label=LOSS_NAMES[m])
    ax.set_xlabel("label-noise rate")
    ax.set_ylabel("MAP@H<=2 (default test)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{name(dataset)}, {key[4]} bits, preset {key[1]}, {key[2]}\nmean over seeds, bars from the lowest "
                 "to the highest", fontsize=8)
    fig.tight_layout()
    save(fig, path)
    return True


def glance_section(records):
    """README's results at a glance: each data set's headline series (preset cpu-pretrained;
    the other presets are in docs/results.md only)."""
    parts = []
    mah_series = {k: v for k, v in series_of(records["mah"]).items() if k[1] == HEADLINE_PRESET}
    for dataset in FIGURES:
        key = headline(mah_series, dataset)
        if key:
            parts.append(mah_glance(dataset, mah_series[key]))
    # a snapshot tested under both conventions has two records of one seed and cell: keep both
    mmhh_series = {}
    for r in (r for r in records["mmhh"] if r["preset"] == HEADLINE_PRESET):
        key = (r["dataset"], r["preset"], r["backbone"], r["device"])
        mmhh_series.setdefault(key, {}).setdefault((r["method"], r["bits"]), {})[
            r["seed"], r["metrics"]["opt_test"]] = r
    for dataset in sorted({k[0] for k in mmhh_series}):
        key = headline(mmhh_series, dataset)
        parts.append(mmhh_glance(dataset, mmhh_series[key]))
    parts += noise_claims(records["mmhh"] + records["protocols"]) + unseen_claims(records["protocols"])
    if not parts:
        return NO_RESULTS["mah"]
    return "\n\n".join(["Written by `python -m utils.report` from the results files; edits here are "
                         "overwritten."] + parts)


def replace_section(text, kind, body, readme):
    """`text` with what lies between the start and end marker of `kind` replaced by `body`."""
    start, end = f"<!-- results-{kind}:start -->", f"<!-- results-{kind}:end -->"
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if j < 0:
        missing = start if i < 0 else f"{end} after {start}"
        raise UserError(f"{readme} has no marker {missing}: add the pair {start} and {end}, each on its own line, "
                        f"where the {kind.upper()} results go")
    return text[:i + len(start)] + "\n" + body + "\n" + text[j:]


# ---------------------------------------------------------------------------- figures

def draw(path, dataset, series):
    """MAH mAP@5000 (beside the published curves) and precision@5000 against code length: the
    mean over the seeds of the headline series, bars from the lowest to the highest seed."""
    key = headline(series, dataset)
    _, preset, backbone, device = key
    cells = series[key]
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)  # render off-screen, without pyplot's global state or a display
    left, right = fig.subplots(1, 2)
    ticks, seeds = set(), set()
    for m in MAH_METHODS:
        bits = sorted(b for method, b in cells if method == m)
        for ax, metric in ((left, "map_at_5000"), (right, "precision_at_5000")):
            if not bits:
                continue
            values = [[r["metrics"][metric] for r in cells[m, b].values()] for b in bits]
            mean = np.array([np.mean(v) for v in values])
            low, high = mean - [min(v) for v in values], [max(v) for v in values] - mean
            ax.errorbar(bits, mean, yerr=[low, high], fmt="-o", capsize=3, color=COLOURS[m], label=f"{m} (ours)")
        seeds |= {seed for b in bits for seed in cells[m, b]}
        published = PUBLISHED_MAP5000.get((dataset, m), {})
        if published:
            left.plot(sorted(published), [published[b] for b in sorted(published)], "--", color=COLOURS[m],
                      label=f"{m} published (approx.)")
        ticks |= set(bits) | set(published)
    left.set_title("mAP@5000 (the paper's \"Precision@5K\")", fontsize=10)
    right.set_title("precision@5000 (ours only)", fontsize=10)
    for ax in (left, right):
        ax.set_xticks(sorted(ticks))
        ax.set_ylim(0, 1)
        ax.set_xlabel("code length (bits)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{name(dataset)}, MAH: preset {preset}, backbone {backbone}, device {device}; mean over seeds "
                 f"{', '.join(map(str, sorted(seeds)))}, bars from the lowest to the highest", fontsize=10)
    fig.tight_layout()
    save(fig, path)


def draw_pr(path, dataset, series):
    """Precision against recall of the Hamming ball (radius 0 to K), one curve per code length,
    a panel per method: the mean over the seeds of the headline series that recorded it.
    Returns False (and draws nothing) when none did."""
    key = headline(series, dataset)
    cells = series[key]
    curves = {cell: [r["metrics"]["pr_by_radius"] for r in by_seed.values() if "pr_by_radius" in r["metrics"]]
              for cell, by_seed in cells.items()}
    curves = {cell: c for cell, c in curves.items() if c}
    if not curves:
        return False
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    for ax, m in zip(fig.subplots(1, 2), MAH_METHODS):
        lengths = sorted(b for method, b in curves if method == m)
        for b in lengths:
            precision = np.mean([c["precision"] for c in curves[m, b]], axis=0)
            recall = np.mean([c["recall"] for c in curves[m, b]], axis=0)
            n = len(curves[m, b])
            ax.plot(recall, precision, "-o", markersize=3, label=f"{b} bits ({n} seed{'s' * (n != 1)})")
        ax.set_title(m, fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(alpha=0.3)
        if lengths:
            ax.legend(fontsize=8)
    fig.suptitle(f"{name(dataset)}, MAH, preset {key[1]}, backbone {key[2]}, device {key[3]}\nprecision and recall of "
                 "the Hamming ball of radius 0, 1, ..., K (an empty ball counts precision 0), mean over the seeds that "
                 "recorded it", fontsize=9)
    fig.tight_layout()
    save(fig, path)
    return True


def save(fig, path):
    # no Software entry: the PNG then holds nothing that changes between matplotlib versions or runs
    atomic_write(path, lambda f: fig.savefig(f, format="png", metadata={"Software": None}))


def data_roots(pairs):
    """--data DATASET=ROOT options as {dataset: root}."""
    roots = {}
    for pair in pairs:
        dataset, sep, root = pair.partition("=")
        if not sep or dataset not in FIGURES or not root:
            raise UserError(f"--data {pair!r}: expected DATASET=ROOT with DATASET one of {', '.join(FIGURES)}")
        roots[dataset] = root
    return roots


def shown_record(runs):
    """The record whose retrieval examples are drawn: the longest MAH-cascade code with
    examples, else the longest of any method."""
    have = sorted(((m == "MAH-cascade", b), r) for (m, b), r in runs.items() if r.get("retrieval"))
    return have[-1][1] if have else None


def image_reader(dataset, root):
    """name -> H x W x 3 uint8 image, for the item names of utils.retrieval: rows of the
    CIFAR-10 or digits array, else image paths under `root` (a folder or an archive)."""
    if dataset == "cifar10":
        images = load_cifar10(root).images
        return lambda row: images[row]
    if dataset == "digits":
        from utils.data.loader import load_digits

        images = load_digits()[0]
        return lambda row: images[row]
    folder = unpacked(root)

    def read(path):
        try:
            with Image.open(os.path.join(folder, path)) as im:
                return np.asarray(im.convert("RGB"))
        except OSError as e:
            raise UserError(f"{os.path.join(folder, path)}: cannot read this image ({e}); is --data "
                            f"{dataset}={root} the data its runs read?") from e
    return read


def draw_retrieval(path, record, read):
    """One row per query: the query, then its top database items framed green when relevant
    and red when not, each with its Hamming distance."""
    shown = record["retrieval"]
    top = max(len(e["top"]) for e in shown)
    fig = Figure(figsize=(1.1 * (top + 1), 1.25 * len(shown) + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(shown), top + 1, squeeze=False)
    for row, example in zip(axes, shown):
        cells = [(example["query"], "black", "query")] + [
            (item, {True: "tab:green", False: "tab:red", None: "tab:gray"}[rel], f"d={d}")
            for item, rel, d in zip(example["top"], example["relevant"], example["distance"])]
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
        for ax, (item, colour, label) in zip(row, cells):
            ax.imshow(read(item))
            ax.set_frame_on(True)
            for spine in ax.spines.values():
                spine.set_color(colour)
                spine.set_linewidth(3)
            ax.set_title(label, fontsize=7, pad=2)
        row[0].set_ylabel(f"{example['tied']} items\nwithin d={example['distance'][-1]}", fontsize=7)
    about = record.get("title") or (f"{name(record['dataset'])}, {record['method']} {record['bits']} bits "
                                    f"({record['preset']}, seed {record['seed']})")
    fig.suptitle(f"{about}: top {top} by Hamming distance, ties in database order; green relevant, red not",
                 fontsize=8)
    fig.tight_layout()
    save(fig, path)


# ---------------------------------------------------------------------------- main

def read_text(path, option):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is missing or not UTF-8 text ({type(e).__name__}); give {option} PATH") from e


def main(args):
    roots = data_roots(args.data)
    records = load_records(args.results)
    # every marker of both files is checked before anything is written
    readme = replace_section(read_text(args.readme, "--readme"), "glance", glance_section(records), args.readme)
    details = read_text(args.details, "--details")
    details = replace_section(details, "mah", mah_section(records["mah"]), args.details)
    details = replace_section(details, "mmhh", mmhh_section(records["mmhh"]), args.details)
    details = replace_section(details, "protocols", protocols_section(records["mmhh"] + records["protocols"]),
                              args.details)
    written = []
    for path, text in ((args.readme, readme), (args.details, details)):
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        print(f"wrote {path}")
        written.append(path)
    series = series_of(records["mah"])
    for dataset, file in FIGURES.items():
        if not headline(series, dataset):
            continue
        os.makedirs(args.fig, exist_ok=True)
        path = os.path.join(args.fig, file)
        draw(path, dataset, series)
        print(f"wrote {path}")
        written.append(path)
        path = os.path.join(args.fig, PR_FIGURES[dataset])
        if draw_pr(path, dataset, series):  # only runs that recorded the curve
            print(f"wrote {path}")
            written.append(path)
    for dataset, file in FIGURES.items():
        path = os.path.join(args.fig, file.replace(".png", "_noise.png"))
        if any(r["dataset"] == dataset for r in records["protocols"]):
            os.makedirs(args.fig, exist_ok=True)
            if draw_noise(path, dataset, records["mmhh"] + records["protocols"]):
                print(f"wrote {path}")
                written.append(path)
    for dataset, root in roots.items():
        # the lowest seed of each cell; of the series whose runs kept examples, the headline one
        first = {k: {cell: by_seed[min(by_seed)] for cell, by_seed in cells.items()} for k, cells in series.items()}
        key = headline({k: cells for k, cells in series.items() if shown_record(first[k])}, dataset)
        record = shown_record(first[key]) if key else None
        if record is None:
            print(f"note: no {dataset} result with retrieval examples; no retrieval picture", file=sys.stderr)
            continue
        os.makedirs(args.fig, exist_ok=True)
        path = os.path.join(args.fig, RETRIEVAL_FIGURES[dataset])
        draw_retrieval(path, record, image_reader(dataset, root))
        print(f"wrote {path}")
        written.append(path)
    return written


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
