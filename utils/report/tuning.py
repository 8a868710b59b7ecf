"""The MMHH tuning grid's section of docs/claims.md: every configuration's validation
MAP@H<=2, what its radius-2 balls hold, and each loss's choice (utils.report.grid)."""
from utils.report.grid import DATASETS, LOSSES, MAIN, OWN_ROW, WEIGHTS, choices, grid, row_of, scored
from utils.report.tables import folded_commands, table


def tuning_section(records, failed=()):
    """docs/claims.md's tuning results: per data set, every configuration's validation MAP@H<=2
    (★: the loss's own setting; "failed": a run that failed, `failed` holding its (dataset,
    bits, method, row)), the chosen one in bold, or how many rows are filed; then what each
    run's radius-2 balls hold, and the commands."""
    found = grid(records)
    for ds, bits, method, row in failed:
        found.setdefault((ds, bits), {}).setdefault(method, {}).setdefault(row, None)
    lines = ["Written by `python -m utils.report` from the tuning results files (validation split, seed 0); "
             "edits here are overwritten."]
    if not found:
        return "\n".join(lines + ["", "No tuning run is filed yet."])
    chosen = choices(records, failed)
    order = [m for m, _ in LOSSES]
    shown = [r for r in scored(records) if r["method"] in order]
    for (ds, bits), by_method in sorted(found.items()):
        header = ["row", "similar weight", "γ (HashNet: sigmoid_param x K)"] + [name for _, name in LOSSES]
        rows = []
        for row in range(1, 2 * len(MAIN) + 1):
            cells = []
            for method, _ in LOSSES:
                v = by_method.get(method, {}).get(row)
                text = "failed" if (ds, bits, method, row) in failed else "—" if v is None else \
                    f"{v:.4f}" + (" ★" if OWN_ROW[method] == row else "")
                cells.append(f"**{text}**" if chosen.get((ds, bits, method)) == row else text)
            rows.append(lead(row) + cells)
        picked = [f"{name} row {chosen[ds, bits, method]}" if (ds, bits, method) in chosen else
                  f"{name} not yet ({len(by_method.get(method, {}))} of {2 * len(MAIN)} rows filed)"
                  for method, name in LOSSES]
        lines += ["", f"**{DATASETS.get(ds, ds)}, {bits} bits**, validation MAP@H<=2 (default convention); "
                  "chosen (bold): " + "; ".join(picked) + ".", ""] + table(header, rows)
        listed = [r for r in shown if (r["dataset"], r["bits"]) == (ds, bits)]
        by_run = {(r["method"], row_of(r)): r for r in listed}  # of two runs of one row, the later, as in grid()
        lines += ["", "What the radius-2 balls of the same runs hold: the mean share of the validation database "
                  "in a query's ball / the share of validation queries whose ball is empty (a MAP@H<=2 from balls "
                  "that hold much of the database ranks nearly every item).", ""] + \
            table(header, [lead(row) + [balls(by_run.get((method, row))) for method, _ in LOSSES]
                           for row in range(1, 2 * len(MAIN) + 1)])
        lines += folded_commands(sorted(listed, key=lambda r: (order.index(r["method"]), row_of(r))), "this grid")
    return "\n".join(lines)


def lead(row):
    """A grid row's first cells: its number, similar-pair weight and γ."""
    return [str(row), WEIGHTS[(row - 1) // len(MAIN)], str(MAIN[(row - 1) % len(MAIN)])]


def balls(record):
    """'share / empty share' of a tuning record's radius-2 balls; '—' without a run, 'n/a' for
    a record written before runs measured them."""
    if record is None:
        return "—"
    b = record["metrics"].get("balls")
    return "n/a" if not b else f"{b['ball_database_share']:.3f} / {b['empty_ball_share']:.3f}"
