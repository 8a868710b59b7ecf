"""The results files as the report sees them: every record under results/, each checked
(a file that is no valid record stops the report before it writes), grouped by setting, by
series of seeds and by protocol cell."""
import glob
import os

from utils.errors import UserError
from utils.records import read_record
from utils.report import failures
from utils.report.grid import chosen_rows, optimiser, tuned
from utils.report.published import declared_regime


def load_records(folder):
    """{"mah", "mmhh", "protocols", "validation", "tuned", "released": [...]} of the records under
    `folder`, in sorted path order. A file that is no valid record (bad JSON, a field missing, a
    MAP outside [0, 1]) is a UserError naming it: skipped, it would drop a seed from a mean
    without a word. Runs trained or tested on the validation split go to "validation" (no table
    shows them); MMHH runs of the configuration the tuning chose for their loss, data set and
    length (headline preset), under any protocol, to "tuned" (Adam) or "released" (the released
    optimiser): the final runs, tabled apart from the runs of other settings of the same loss;
    runs under label noise or unseen classes to "protocols" (their own tables), the others to
    their paper's; an MMHH run with the memory bank is method "<loss> + memory". "failed": the
    runs results/failures.jsonl records as failed (utils.report.failures)."""
    if not os.path.isdir(folder):
        raise UserError(f"results folder {folder} does not exist: give --results DIR, the folder holding the "
                        "results JSON files")
    records = {"mah": [], "mmhh": [], "protocols": [], "validation": [], "tuned": [], "released": [],
               "failed": failures.read(folder)}
    found, invalid = [], []
    for path in sorted(glob.glob(os.path.join(folder, "**", "*.json"), recursive=True)):
        try:
            found.append(read_record(path))
        except ValueError as e:
            invalid.append((path, e))
    if invalid:
        (path, reason), more = invalid[0], len(invalid) - 1
        raise UserError(f"results file {path} is no valid results record: {reason}; correct it or move it out of "
                        f"{folder}{f' ({more} more files are invalid too)' if more else ''}; nothing was written")
    found = [(kind, {**r, "method": f"{r['method']} + memory"})
             if kind == "mmhh" and r.get("args", {}).get("batch_type") == "BatchInitMem" else (kind, r)
             for kind, r in found]
    chosen = chosen_rows([r for _, r in found if validation(r)], records["failed"])
    for kind, record in found:
        if validation(record):
            records["validation"].append(record)
        elif kind == "mmhh" and declared_regime(record) and tuned(record, chosen):
            records["tuned" if optimiser(record) == "adam" else "released"].append(record)
        else:
            records["protocols" if setting(record) != ("standard", 0.0) else kind].append(record)
    return records


def validation(record):
    """Whether a run is a tuning run: tested on the validation split, or trained without it."""
    return "val" in ((record.get("protocol") or {}).get("eval_on"), record.get("args", {}).get("eval_on"))


def setting(record):
    """(protocol, label noise) of a run: ("standard", 0.0) for the papers' own setting."""
    p = record.get("protocol") or {}
    return ("unseen" if p.get("protocol") == "unseen" else "standard", float(p.get("label_noise", 0.0)))


def mixed(by_seed):
    """Whether the runs of {seed or method: record} ran at more than one commit (uncommitted
    changes aside)."""
    return len({str(r.get("git_commit")).removesuffix("-dirty") for r in by_seed.values()}) > 1


SERIES = ("dataset", "preset", "backbone", "device")  # the fields of a series' key, in order


def series_key(r):
    return tuple(r[field] for field in SERIES)


def groups_of(records):
    """{(dataset, preset, backbone, device, seed): {(method, bits): record}}."""
    groups = {}
    for r in records:
        # records come in sorted path order: of two runs for one table cell, the later file wins
        groups.setdefault((*series_key(r), r["seed"]), {})[r["method"], r["bits"]] = r
    return groups


def series_of(records):
    """{(dataset, preset, backbone, device): {(method, bits): {seed: record}}}; of two runs
    of one seed and cell, the later file wins, as in the tables."""
    series = {}
    for r in records:
        series.setdefault(series_key(r), {}).setdefault((r["method"], r["bits"]), {})[r["seed"]] = r
    return series


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


MMHH_QUANTITIES = [("MAP@H<=2", lambda r: not r["metrics"]["opt_test"], "map_within_radius"),
                   ("MAP@H<=2, --opt-test", lambda r: r["metrics"]["opt_test"], "map_within_radius"),
                   ("MAP@TopK", lambda r: not r["metrics"]["opt_test"], "map_topk")]


def protocol_cells(records):
    """{(dataset, preset, backbone, device, bits): {(method, protocol, noise): {(seed, opt_test): record}}}."""
    cells = {}
    for r in records:
        seed = (r["seed"], r.get("metrics", {}).get("opt_test", False))
        cells.setdefault((*series_key(r), r["bits"]), {}).setdefault((r["method"], *setting(r)), {})[seed] = r
    return cells
