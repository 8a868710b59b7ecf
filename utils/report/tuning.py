"""The MMHH tuning grid's section of docs/claims.md: every configuration's validation
MAP@H<=2 and each loss's choice (utils.report.grid)."""
from utils.report.grid import LOSSES, MAIN, OWN_ROW, WEIGHTS, choices, grid, row_of, scored
from utils.report.tables import folded_commands, table


def tuning_section(records):
    """docs/claims.md's tuning results: per data set, every configuration's validation MAP@H<=2
    (★: the loss's own setting), the chosen one in bold, or how many rows are filed."""
    found = grid(records)
    lines = ["Written by `python -m utils.report` from the tuning results files (validation split, seed 0); "
             "edits here are overwritten."]
    if not found:
        return "\n".join(lines + ["", "No tuning run is filed yet."])
    chosen = choices(records)
    for (ds, bits), by_method in sorted(found.items()):
        header = ["row", "similar weight", "γ (HashNet: sigmoid_param x K)"] + [name for _, name in LOSSES]
        rows = []
        for row in range(1, 2 * len(MAIN) + 1):
            cells = []
            for method, _ in LOSSES:
                v = by_method.get(method, {}).get(row)
                text = "—" if v is None else f"{v:.4f}" + (" ★" if OWN_ROW[method] == row else "")
                cells.append(f"**{text}**" if chosen.get((ds, bits, method)) == row else text)
            rows.append([str(row), WEIGHTS[(row - 1) // len(MAIN)], str(MAIN[(row - 1) % len(MAIN)])] + cells)
        picked = [f"{name} row {chosen[ds, bits, method]}" if (ds, bits, method) in chosen else
                  f"{name} not yet ({len(by_method.get(method, {}))} of {2 * len(MAIN)} rows filed)"
                  for method, name in LOSSES]
        lines += ["", f"**{ds}, {bits} bits**, validation MAP@H<=2 (default convention); chosen (bold): "
                  + "; ".join(picked) + ".", ""] + table(header, rows)
        order = [m for m, _ in LOSSES]
        listed = [r for r in scored(records) if (r["dataset"], r["bits"]) == (ds, bits) and r["method"] in order]
        lines += folded_commands(sorted(listed, key=lambda r: (order.index(r["method"]), row_of(r))), "this grid")
    return "\n".join(lines)
