"""The MMHH final runs' tables: each loss in the configuration its tuning chose, under every
setting that has runs, as the mean over seeds with its 95% interval (docs/claims.md's "Final
runs" and the README's MMHH tables)."""
from utils.report.claims import FINAL_SETTINGS, interval
from utils.report.collect import setting
from utils.report.grid import DATASETS, LOSSES, optimiser
from utils.report.tables import folded_commands, table

FINAL_QUANTITIES = [  # (label, test convention --opt-test, value of a record, digits)
    ("MAP@H<=2", False, lambda m: m["map_within_radius"], 4),
    ("MAP@H<=2, --opt-test", True, lambda m: m["map_within_radius"], 4),
    ("MAP@TopK", False, lambda m: m["map_topk"], 4),
    ("radius-2 ball, share of the database", False, lambda m: m.get("balls", {}).get("ball_database_share"), 3),
    ("share of queries with an empty ball", False, lambda m: m.get("balls", {}).get("empty_ball_share"), 3)]


def estimate(values, digits):
    """'mean [low, high] (n)' with the 95% Student-t interval; 'value (1)' for one seed. Every
    quantity estimated this way is a MAP or a share, so the interval is cut to [0, 1]: the t
    interval of few seeds can reach past the values the quantity can take."""
    mean, low, high, n = interval(values)
    if low is None:
        return f"{mean:.{digits}f} (1)"
    low, high = max(low, 0.0), min(high, 1.0)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] ({n})"


def column(record):
    """The final-runs column of a run: (optimiser, protocol, label-noise rate)."""
    return (optimiser(record), *setting(record))


def final_cells(records):
    """{(dataset, bits): {(method, column, --opt-test): {seed: metrics}}} and {(dataset, bits):
    [record]} of the final runs (load_records' "tuned" and "released" groups)."""
    cells, runs = {}, {}
    for r in records.get("tuned", []) + records.get("released", []):
        cells.setdefault((r["dataset"], r["bits"]), {}).setdefault((r["method"], column(r), r["metrics"]["opt_test"]),
                                                                   {})[r["seed"]] = r["metrics"]
        runs.setdefault((r["dataset"], r["bits"]), []).append(r)
    return cells, runs


def finals_section(records):
    """docs/claims.md's final runs: per data set, each loss in its tuned configuration under
    every setting that has runs, as the mean over seeds with its 95% interval (n seeds), for
    the primary metric and beside it the other convention, MAP@TopK and what the radius-2
    balls hold (a loss whose balls hold much of the database, or are often empty, says so
    there). `records`: load_records' groups ("tuned" and "released")."""
    lines = ["Written by `python -m utils.report` from the results files of the tuned configurations; edits here "
             "are overwritten."]
    cells, runs = final_cells(records)
    if not cells:
        return "\n".join(lines + ["", "No final run is filed yet."])
    for (dataset, bits), by_cell in sorted(cells.items()):
        columns = [(c, heading) for c, heading in FINAL_SETTINGS if any(c == key[1] for key in by_cell)]
        rows = []
        for label, opt_test, value, digits in FINAL_QUANTITIES:
            for loss, name in LOSSES:
                got = [[v for v in map(value, by_cell.get((loss, c, opt_test), {}).values()) if v is not None]
                       for c, _ in columns]
                if any(got):
                    rows.append([f"{label}, {name}", *(estimate(v, digits) if v else "no run" for v in got)])
        shown = DATASETS.get(dataset, dataset)
        lines += ["", f"**{shown}, {bits} bits**: mean over seeds [95% interval, cut at 0 and 1] (seeds).", ""] + \
            table(["", *(heading for _, heading in columns)], rows)
        # the commands of the runs in the table, by loss, column, seed, then the --opt-test one
        shown_columns = [c for c, _ in columns]
        order = [m for m, _ in LOSSES]
        listed = [r for r in runs[dataset, bits] if column(r) in shown_columns]
        listed.sort(key=lambda r: (order.index(r["method"]) if r["method"] in order else len(order), r["method"],
                                   shown_columns.index(column(r)), r["seed"], r["metrics"]["opt_test"]))
        lines += folded_commands(listed, "this table")
    return "\n".join(lines)


CLEAN = ("adam", "standard", 0.0)  # the final runs' clean column


def finals_glance(records):
    """The README's MMHH tables: per data set, each loss's clean final runs (tuned settings, test
    queries) as the mean over seeds with its 95% interval, one row per loss and the quantities
    of docs/claims.md's final-runs table as columns; [] before any clean final run."""
    parts = []
    for (dataset, bits), by_cell in sorted(final_cells(records)[0].items()):
        rows = []
        for loss, name in LOSSES:
            got = [[v for v in map(value, by_cell.get((loss, CLEAN, opt_test), {}).values()) if v is not None]
                   for _, opt_test, value, _ in FINAL_QUANTITIES]
            if any(got):
                rows.append([name, *(estimate(v, q[3]) if v else "no run" for v, q in zip(got, FINAL_QUANTITIES))])
        if not rows:  # final runs of this data set, none of them clean
            continue
        about = (f"**MMHH, {DATASETS.get(dataset, dataset)}, {bits} bits**: the four losses in the "
                 "settings chosen on a validation split, on the test queries; mean over seeds [95% interval, "
                 "cut at 0 and 1] (seeds); the other settings: [docs/claims.md](docs/claims.md#final-runs).")
        parts.append("\n".join([about, ""] + table(["loss", *(q[0] for q in FINAL_QUANTITIES)], rows)))
    return parts
