"""The protocol tables and sentences (docs/protocols.md): the losses under label noise and on
unseen classes, what their Hamming balls hold, and the paired differences over seeds."""
import numpy as np

from utils.report.collect import MMHH_QUANTITIES, protocol_cells
from utils.report.published import LOSS_NAMES, MAH_METHODS, MMHH_METHODS
from utils.report.tables import name, spread, table


# what the Hamming balls of the default test hold (results files with metrics "balls")
BALL_SHARE = "Radius-2 ball, mean share of the database"


BALL_QUANTITIES = [("share of queries with an empty ball", "empty_ball_share", 3),
                   ("items per ball, median", "ball_items_median", 0)]


def balls_of(by_seed, key):
    """`key` of what the balls hold, over the default-test records of one cell ({(seed,
    opt_test): record}); none from files without the statistics (results/backfill/balls.py adds them)."""
    return [r["metrics"]["balls"][key] for (seed, opt), r in by_seed.items() if not opt and "balls" in r["metrics"]]


def ball_values(cells, method, setting_, key):
    """`key` of what the balls hold, over the seeds of `method` under `setting_` (protocol, rate)."""
    return balls_of(cells.get((method, *setting_), {}), key)


def by_loss(values, spec):
    """'MMHH loss 0.54; HashNet loss 0.02': each loss's name and its value in format `spec`.
    Semicolons, because a loss's name can hold a comma ('MMHH loss, memory bank')."""
    return "; ".join(f"{LOSS_NAMES[m]} {v:{spec}}" for m, v in values.items())


def percentages(values):
    """'MMHH loss 54%; HashNet loss 2%': each loss's mean over seeds; losses without values left out."""
    return by_loss({m: np.mean(v) for m, v in values.items() if v}, ".0%")


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
        shares = by_loss(default, ".2f")
        verdict = "degrades less than HashNet's, as the paper claims" if less else \
            "does not degrade less than HashNet's, against the paper's claim"
        claims = (f"the share of its MAP@H<=2 at rate 0 that each loss keeps at rate {top:g} is {shares} under the "
                  f"default test, so the MMHH loss {verdict}")
        for kept, less in opt_test:
            values = ", ".join(f"{v:.2f}" for v in kept.values()) if list(kept) == list(default) else \
                by_loss(kept, ".2f")
            verdict = "degrades less, as the paper claims" if less else "does not degrade less, against the claim"
            claims += f". Under --opt-test, which leaves queries with an empty ball out, it is {values}, so it "
            claims += verdict
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
                         + (f"Its MAP@H<=2 minus HashNet's (default test): {'; '.join(differences)}; {superior}."
                            if means else "No seed has both losses at a noisy rate.")
                         + (f" Queries whose radius-2 ball is empty at rate {top:g}: {balls}." if balls else ""))
    return sentences


def protocols_section(records):
    """docs/results.md's protocol section: what the MMHH paper's noise and unseen-class claims
    come to, then the tables behind them."""
    parts = noise_claims(records) + unseen_claims(records) + noise_tables(records) + unseen_tables(records)
    if not parts:
        return "No runs under label noise or unseen classes yet (docs/protocols.md)."
    return "\n\n".join(["Written by `python -m utils.report` from the results files; edits here are "
                         "overwritten. Runs under label noise or unseen classes (docs/protocols.md)."] + parts)
