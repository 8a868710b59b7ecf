"""The MMHH tuning grid of docs/claims.md: each run's row, and each loss's choice by the
declared rule (the highest validation MAP@H<=2 under the default convention; within TIED of
the best counts as tied, and among the tied the loss's own, starred, setting wins, else the
lowest row). A loss is chosen only once all its rows are filed (a failed run's row counts as
filed and is never chosen), so a choice never rests on part of the grid."""
from utils.report import failures
from utils.report.published import NAMES, declared_regime

LOSSES = (("MMHH", "MMHH"), ("MMHH0", "MMHH without margin"), ("DCH", "DCH"), ("Hamming", "HashNet"))
WEIGHTS = ("1", "auto")  # rows 1-4, then 5-8
MAIN = (5, 10, 20, 40)  # gamma; HashNet's sigmoid_param is these over K
OWN_ROW = {"MMHH": 2, "MMHH0": 2, "DCH": 7, "Hamming": 6}  # each loss's published or released setting
TIED = 0.001
DATASETS = {d: NAMES[d] for d in ("cifar10", "flickr25k")}  # where the grid is run, as the tables name them


def row_of(record):
    """The grid row (1 to 8) of a tuning record, or None when its settings are off the grid."""
    a = record.get("args", {})
    weight = str(a.get("similar_weight_type"))
    main = a.get("sigmoid_param", 0) * record["bits"] if record["method"] == "Hamming" else a.get("gamma")
    hits = [i for i, v in enumerate(MAIN) if main is not None and abs(main - v) < 1e-6]
    if weight not in WEIGHTS or not hits:
        return None
    return WEIGHTS.index(weight) * len(MAIN) + hits[0] + 1


def tuned(record, chosen):
    """Whether a run used the configuration the tuning chose (`chosen`: choices) for its data set,
    length and loss."""
    pick = chosen.get((record["dataset"], record["bits"], record["method"]))
    return pick is not None and row_of(record) == pick


def optimiser(record):
    """The optimiser a run trained with (records written before the option say nothing: Adam)."""
    return record.get("args", {}).get("optimizer", "adam")


def choose(scores, own):
    """The chosen row of {row: validation MAP}: the best, the own row among the tied, else the
    lowest tied row."""
    best = max(scores.values())
    tied = sorted(r for r, v in scores.items() if v >= best - TIED)
    return own if own in tied else tied[0]


def scored(records):
    """The tuning records the grid scores: seed 0 in the declared regime (declared_regime), clean,
    default convention, on a grid row, with a MAP@H<=2."""
    out = []
    for r in records:
        m, p = r.get("metrics", {}), r.get("protocol") or {}
        if r.get("seed") != 0 or not declared_regime(r):
            continue
        if m.get("opt_test") or p.get("protocol") == "unseen" or float(p.get("label_noise") or 0):
            continue
        if row_of(r) is not None and m.get("map_within_radius") is not None:
            out.append(r)
    return out


def grid(records):
    """{(dataset, bits): {method: {row: validation MAP@H<=2}}} of the scored tuning records."""
    out = {}
    for r in scored(records):
        out.setdefault((r["dataset"], r["bits"]), {}).setdefault(r["method"], {})[row_of(r)] = \
            r["metrics"]["map_within_radius"]
    return out


def choices(records, failed=()):
    """{(dataset, bits, method): chosen row} for every loss whose eight rows are filed; `failed`:
    the (dataset, bits, method, row) of tuning runs that failed, rows that count as filed but are
    never chosen (a loss all of whose rows failed has no choice)."""
    out = {}
    for (ds, bits), by_method in grid(records).items():
        for method, scores in by_method.items():
            lost = {row for d, b, m, row in failed if (d, b, m) == (ds, bits, method)} - set(scores)
            if len(scores) + len(lost) == 2 * len(MAIN):
                out[ds, bits, method] = choose(scores, OWN_ROW[method])
    return out


def chosen_rows(validation, entries):
    """choices() of the tuning records `validation`, given results/failures.jsonl's `entries`."""
    return choices(validation, failures.failed(entries, "tuning"))
