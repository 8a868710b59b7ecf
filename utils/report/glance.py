"""The README's results at a glance: the headline table of each data set beside the published
values, every cell over its seeds, and the sentences that say where the papers' claims hold."""
import numpy as np

from utils.report.collect import MMHH_QUANTITIES, regime, series_of
from utils.report.published import (FIGURES, HEADLINE_METRIC, HEADLINE_PRESET, LOSS_NAMES, MAH_BITS, MAH_METHODS,
                                    MAH_VARIANTS, MMHH_METHODS, PUBLISHED_MAP, PUBLISHED_MAP5000)
from utils.report.robustness import BALL_SHARE, balls_of, noise_claims, percentages, unseen_claims
from utils.report.tables import NO_RESULTS, name, spread, table


def headline(series, dataset):
    """The key of `dataset`'s headline series: preset cpu-pretrained when there is one, else
    any; the one with most runs (ties: the first in sorted order). None without runs."""
    mine = sorted(k for k in series if k[0] == dataset)
    best = [k for k in mine if k[1] == HEADLINE_PRESET] or mine
    return max(best, key=lambda k: sum(map(len, series[k].values()))) if best else None


def mah_glance(dataset, cells):
    """The headline MAH table of one data set: published, ours over seeds (ADSH, flat, cascade),
    cascade - flat."""
    metric, quantity = HEADLINE_METRIC.get(dataset, ("map_tie_aware", "tie-aware MAP"))
    published = PUBLISHED_MAP if metric == "map_tie_aware" else PUBLISHED_MAP5000
    bits = sorted(set(MAH_BITS) | {b for _, b in cells})
    values = {cell: {seed: r["metrics"][metric] for seed, r in by_seed.items()} for cell, by_seed in cells.items()}
    rows = []
    for m in MAH_METHODS:
        pub = published.get((dataset, m), {})
        if pub:  # no row of "n/a" where the paper gives the method no value
            rows.append([f"{m}, published", *(f"{pub[b]:.4f}" if b in pub else "n/a" for b in bits)])
        rows.append([f"{m}, ours", *(spread(list(values[m, b].values())) if (m, b) in values else "no run"
                                     for b in bits)])
    differences, agreement = [], {}  # agreement: bits -> (seeds of the published sign, paired seeds)
    for b in bits:
        flat, cascade = values.get(("MAH-flat", b), {}), values.get(("MAH-cascade", b), {})
        pub = [published.get((dataset, m), {}).get(b) for m in MAH_VARIANTS]
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
    pub = [published.get((dataset, m), {}) for m in MAH_VARIANTS]
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
