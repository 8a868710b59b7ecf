"""The README's results at a glance: the headline table of each data set beside the published
values, every cell over its seeds, and the sentences that say where the papers' claims hold."""
import numpy as np

from utils.report.claims import claims_glance
from utils.report.finals import finals_glance
from utils.report.plan import remaining
from utils.report.collect import MMHH_QUANTITIES, SERIES, mixed, regime, series_key, series_of
from utils.report.published import (FIGURES, HEADLINE_METRIC, HEADLINE_PRESET, LOSS_NAMES, MAH_BITS, MAH_METHODS,
                                    MMHH_METHODS, PUBLISHED_MAP, PUBLISHED_MAP5000, declared_regime)
from utils.report.robustness import BALL_SHARE, balls_of, percentages
from utils.report.tables import NO_RESULTS, name, spread, table
from utils.report.grid import chosen_rows, tuned


def headline(series, dataset):
    """The key of `dataset`'s headline series (series_of's keys): the declared regime's when there
    is one, else preset cpu-pretrained's, else any; of several, the one with most runs (ties: the
    first in sorted order). None without runs."""
    mine = sorted(k for k in series if k[0] == dataset)
    best = [k for k in mine if declared_regime(dict(zip(SERIES, k)))] or \
        [k for k in mine if k[1] == HEADLINE_PRESET] or mine
    return max(best, key=lambda k: sum(map(len, series[k].values()))) if best else None


def mah_glance(dataset, cells):
    """The headline MAH table of one data set: published and ours over seeds, ADSH, flat and
    cascade (their differences are judged in the claims table)."""
    metric, quantity = HEADLINE_METRIC.get(dataset, ("map_tie_aware", "tie-aware MAP"))
    published = PUBLISHED_MAP if metric == "map_tie_aware" else PUBLISHED_MAP5000
    bits = sorted(set(MAH_BITS) | {b for _, b in cells})
    values = {cell: {seed: r["metrics"][metric] for seed, r in by_seed.items()} for cell, by_seed in cells.items()}
    rows = []
    for m in MAH_METHODS:
        pub = published.get((dataset, m), {})
        if pub:  # no row of "n/a" where the paper gives the method no value
            rows.append([f"{m}, published", *(f"{pub[b]:.4f}" if b in pub else "n/a" for b in bits)])
        rows.append([f"{m}, ours", *(spread(list(values[m, b].values())) + MIXED * mixed(cells[m, b])
                                     if (m, b) in values else "no run" for b in bits)])
    source = "the paper's table (ResNet-50 at 224 px)" if metric == "map_tie_aware" else \
        "read off the paper's figure (approximate)"
    about = (f"**MAH, {name(dataset)}**: {quantity} (published: {source}). Ours: "
             f"{regime([r for by_seed in cells.values() for r in by_seed.values()])}; mean ± half-range (seeds).")
    note = [f"{MIXED} its seeds ran at different commits (docs/results.md lists each run's command)."] \
        if any(mixed(by_seed) for by_seed in cells.values()) else []
    return "\n".join([about, ""] + table(["", *(f"{b} bits" for b in bits)], rows) + ([""] + note if note else []))


MIXED = "†"


def mmhh_values(cells, keep, metric):
    """{(method, bits): {seed key: value}} of the records `keep` selects."""
    return {cell: {seed: r["metrics"][metric] for seed, r in by_seed.items() if keep(r)}
            for cell, by_seed in cells.items()}


def mmhh_glance(dataset, cells, chosen):
    """The headline MMHH table: MAP@H<=2 of each loss that ran against HashNet's, under the
    default test conventions (MAP@TopK and the --opt-test conventions are in docs/results.md).
    `chosen`: the tuning's choices (utils.report.grid.chosen_rows); runs with other settings are
    said to be untuned."""
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
            cells_d.append(f"{np.mean(d):+.4f}, {m.split(' + ')[0]} ahead in {sum(x > 0 for x in d)} of {len(d)}"
                           if d else "no pair")
        rows.append([f"{label}, {m} - HashNet", *cells_d])
    about = (f"**MMHH, {name(dataset)}**: the MMHH loss against HashNet's, one network (no published value; "
             "MAP@TopK, --opt-test: docs/results.md). "
             f"Ours: {regime([r for by_seed in cells.values() for r in by_seed.values()])}; mean ± half-range "
             "(seeds).")
    untuned = sorted({LOSS_NAMES[r["method"]] for by_seed in cells.values() for r in by_seed.values()
                      if not tuned(r, chosen)})
    if untuned:
        about += (f" **Untuned**: {'; '.join(untuned)} ran with settings fixed before any tuning, not ones chosen "
                  "on a validation split ([docs/claims.md](claims.md#tuning-validation-only)).")
    # how crowded the balls are tells a MAP@H<=2 near the share of relevant items from a ranking
    shares = [(b, percentages({m: balls_of(cells.get((m, b), {}), "ball_database_share") for m in methods}))
              for b in bits]
    notes = [f"{BALL_SHARE}, {b} bits: {p}." for b, p in shares if p]
    return "\n".join([about, ""] + table(["", *(f"{b} bits" for b in bits)], rows) + ([""] + notes if notes else []))


def glance_section(records):
    """README's results at a glance: the claims table, the headline MAH table of the first data
    set that has one (CIFAR-10: the data set of the papers' main claims) and the MMHH losses'
    clean final runs; every other headline table is in docs/results.md (headline_section), and
    the other final runs in docs/claims.md, which keeps the README short."""
    runs = ("mah", "mmhh", "protocols", "tuned", "released")
    parts = [claims_glance(records) + "\n\n" + still_to_make(records)] if any(records.get(k) for k in runs) else []
    mah_tables = mah_headlines(records)
    parts += mah_tables[:1] + finals_glance(records)
    if mah_tables[1:] or records["mmhh"] or records["protocols"]:
        parts.append("The other headline tables: [docs/results.md](docs/results.md#headline-tables).")
    if not parts:
        return NO_RESULTS["mah"]
    return "\n\n".join([OVERWRITTEN] + parts)


def still_to_make(records):
    """The sentence on how many of the declared runs are not filed yet."""
    missing, declared = remaining(records)
    if not missing:
        failed = len(records.get("failed", []))
        return (f"All {declared} runs that docs/claims.md declares are made"
                + (f"; {failed} of them failed, recorded in results/failures.jsonl." if failed else "."))
    return (f"Runs still to make: {missing} of the {declared} that docs/claims.md declares "
            "(`python -m utils.report.plan` lists them with their commands).")


OVERWRITTEN = "Written by `python -m utils.report` from the results files; edits here are overwritten."


def mah_headlines(records):
    """The headline MAH table of each data set that has runs of preset cpu-pretrained (of the
    declared regime where it has them: headline), in the order of FIGURES."""
    series = {k: v for k, v in series_of(records["mah"]).items() if k[1] == HEADLINE_PRESET}
    keys = [(dataset, headline(series, dataset)) for dataset in FIGURES]
    return [mah_glance(dataset, series[key]) for dataset, key in keys if key]


def headline_section(records):
    """docs/results.md's headline tables: each data set's headline series over seeds (preset
    cpu-pretrained), MAH beside the published values, MMHH's losses against HashNet's."""
    parts = mah_headlines(records)
    # a snapshot tested under both conventions has two records of one seed and cell: keep both
    mmhh_series = {}
    for r in (r for r in records["mmhh"] if r["preset"] == HEADLINE_PRESET):
        mmhh_series.setdefault(series_key(r), {}).setdefault((r["method"], r["bits"]), {})[
            r["seed"], r["metrics"]["opt_test"]] = r
    chosen = chosen_rows(records["validation"], records.get("failed", []))
    for dataset in sorted({k[0] for k in mmhh_series}):
        parts.append(mmhh_glance(dataset, mmhh_series[headline(mmhh_series, dataset)], chosen))
    if records["protocols"]:
        parts.append("MMHH under label noise and on unseen classes: [below](#label-noise-and-unseen-classes).")
    if not parts:
        return NO_RESULTS["mah"]
    return "\n\n".join([OVERWRITTEN] + parts)
