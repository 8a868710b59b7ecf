"""The full tables of docs/results.md: every group of MAH and MMHH runs with all its
quantities and the commands behind them, and the tables over seeds."""
import numpy as np

from utils.report.collect import groups_of, series_of
from utils.report.published import (MAH_BITS, MAH_METHODS, MAH_VARIANTS, MMHH_METHODS, NAMES, OPT_TEST, PUBLISHED_MAP,
                                    PUBLISHED_MAP5000)


NO_RESULTS = {
    "mah": "No results yet: run a MAH script, e.g. `python cascade_CIFAR-10.py --preset cpu-small --gpu cpu "
           "--data-root DATA`, then `python -m utils.report`.",
    "mmhh": "No results yet: run `python train_mmhh.py`, then `python -m utils.report`.",
}


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


def commands(runs, methods, bits):
    """The commands behind the cells, by method then bits; one command may have filled several cells."""
    found = [runs[m, b].get("command") for m in methods for b in bits if (m, b) in runs]
    unique = list(dict.fromkeys(c for c in found if c))
    if not unique:
        return ["Commands: none recorded (results files from before records carried their command)."]
    return ["Commands:", ""] + ["    " + c for c in unique]


def folded_commands(records, what):
    """The commands of `records`, each once in the order given, folded under one line that
    GitHub opens on a click: for tables built from more runs than a page should list."""
    unique = list(dict.fromkeys(r["command"] for r in records if r.get("command")))
    if not unique:
        return []
    return ["", f"<details><summary>The {len(unique)} commands behind {what}</summary>", ""] + \
        ["    " + c for c in unique] + ["", "</details>"]


def difference(record, published):
    if published is None:
        return "n/a"
    if record is None:
        return "no run"
    # + 0.0 turns the -0.0 of a tiny negative difference into 0.0, shown +0.0000
    return f"{round(record['metrics']['map_tie_aware'] - published, 4) + 0.0:+.4f}"


GROUPED = "‡"


GROUPED_NOTE = (f"{GROUPED} ran with the database in class-grouped order: its MAP with ties by index is biased "
                "upward and is no reproduction figure; its tie-aware MAP and the other rows do not depend on the "
                "order.")


def grouped(record):
    """Whether the run ranked a class-grouped database (a record that does not say its order was seeded)."""
    return record.get("database_order") != "seeded random"


def mah_table(group, runs):
    dataset = group[0]
    bits = sorted(set(MAH_BITS) | {b for _, b in runs})
    methods = ordered(runs, MAH_VARIANTS)  # ADSH where it ran
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
    out = []
    for (dataset, preset, backbone, device), runs in sorted(series_of(records).items()):
        # one value per seed: of two runs for one cell, the later file wins, as in the tables
        runs = {k: {seed: r["metrics"]["map_tie_aware"] for seed, r in by_seed.items()}
                for k, by_seed in runs.items() if len(by_seed) > 1}
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
    # the paper's loss and HashNet's always, the other losses where they ran
    methods = [m for m in MMHH_METHODS if m in ("MMHH", "Hamming") or any(method == m for method, _ in runs)]
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


def spread(values, digits=4):
    """'mean ± half-range (n)' of a cell's values over seeds; 'value (1)' for one seed."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1)"
    return f"{np.mean(values):.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f} ({len(values)})"
