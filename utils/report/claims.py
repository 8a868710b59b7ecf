"""The papers' claims, each judged by the rule docs/claims.md declares: the mean paired
difference over seeds with its 95% Student-t interval, and a verdict (holds, fails,
inconclusive) from where the interval lies. The README opens its results with these rows;
docs/claims.md holds the same rows with every cell."""
import re

import numpy as np
from scipy import stats

from utils.report import failures
from utils.report.collect import mixed, series_of, setting
from utils.report.grid import DATASETS, LOSSES, chosen_rows, optimiser, tuned
from utils.report.published import MAH_BITS, PUBLISHED_MAP, PUBLISHED_MAP5000, declared_regime
from utils.report.tables import table

LEVEL = 0.01  # the resolution of values read off a figure: "level" within it
EARLY = 10  # "faster": MAP after this many outer iterations
LATE = (20, 30, 40)  # "more stable": mean |MAP_t - MAP_{t-10}| over these t
MMHH_BITS = 32  # the length MMHH's claims are tuned and run at
# MMHH against each, in the order of the declared rows: the paper's baseline, HashNet, the ablation
RIVALS = (("DCH", "MMHH beats DCH"), ("Hamming", "MMHH beats HashNet"), ("MMHH0", "the margin helps"))
NOISE = (0.2, 0.4)
# the MMHH final runs' settings, (optimiser, protocol, label noise), as the tables and notes name them
FINAL_SETTINGS = [(("adam", "standard", 0.0), "clean")] + \
    [(("adam", "standard", rate), f"label noise {rate:g}") for rate in NOISE] + \
    [(("adam", "unseen", 0.0), "unseen classes"), (("sgd", "standard", 0.0), "clean, released optimiser")]
# the seeds docs/claims.md declares for each cell; a verdict on fewer is interim
CIFAR_SEEDS = {4: 5, 6: 3, 8: 5, 10: 3, 12: 5, 48: 3}
FLICKR_SEEDS = {4: 3, 6: 1, 8: 3, 10: 1, 12: 3}
MMHH_SEEDS = {"adam": 5, "sgd": 3}  # the tuned final runs, and those under the released optimiser


def interval(differences):
    """(mean, low, high, n) of paired differences: the 95% Student-t interval over the seeds;
    low and high are None for fewer than two seeds, and everything is None for none."""
    x = np.asarray(differences, dtype=float)
    n = len(x)
    if n == 0:
        return None, None, None, 0
    mean = float(x.mean())
    if n < 2:
        return mean, None, None, n
    half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half, n


def verdict(low, high, kind, side=1, tolerance=0.0):
    """holds, fails or inconclusive for an interval [low, high]. kind: "sign" (the paper's side
    of 0 is `side`, +1 or -1), "level" (within ±tolerance) or "not below" (-tolerance)."""
    if low is None:
        return "inconclusive"
    if kind == "sign":
        low, high = (low, high) if side > 0 else (-high, -low)
        return "holds" if low > 0 else "fails" if high < 0 else "inconclusive"
    if kind == "level":
        if -tolerance <= low and high <= tolerance:
            return "holds"
        return "fails" if high < -tolerance or low > tolerance else "inconclusive"
    if kind == "not below":
        return "holds" if low > -tolerance else "fails" if high < -tolerance else "inconclusive"
    raise ValueError(f"unknown kind of claim {kind!r}")


def paired(a, b):
    """{seed: a[s] - b[s]} over the seeds both have, in seed order."""
    return {s: a[s] - b[s] for s in sorted(set(a) & set(b))}


def values(by_seed, metric):
    """{seed: value} of one cell's {seed: record}; `metric` names a metric or is a function of
    the record (None where the record lacks it). A failed run has none."""
    pick = metric if callable(metric) else (lambda r: r["metrics"][metric])
    out = {seed: pick(r) for seed, r in by_seed.items() if "failed" not in r}
    return {seed: v for seed, v in out.items() if v is not None}


def at_iteration(t):
    """The tie-aware MAP of a record's learning curve after t outer iterations (None without)."""
    def pick(record):
        found = [p["map_tie_aware"] for p in record.get("curve", []) if p["iteration"] == t]
        return found[0] if found else None
    return pick


def late_change(record):
    """Mean |MAP_t - MAP_{t-10}| over LATE, from the record's curve (None where it lacks a point)."""
    curve = {p["iteration"]: p["map_tie_aware"] for p in record.get("curve", [])}
    if not all(t in curve and t - 10 in curve for t in LATE):
        return None
    return float(np.mean([abs(curve[t] - curve[t - 10]) for t in LATE]))


def row(name, claim, figure, differences, runs, kind, planned, side=1, tolerance=0.0):
    """A claim's row from its {seed: paired difference}. `planned`: the seeds docs/claims.md
    declares for it, 0 to planned - 1 (another seed is left out; fewer make the verdict interim);
    `runs`: the {seed: record} cells the differences come from, for "no pair" (each has runs,
    no seed has all), "other commits" (a pair whose runs ran at different commits) and the
    seeds whose run failed in any of them (they drop out, and count as made)."""
    kept = {s: x for s, x in differences.items() if s < planned}
    mean, low, high, n = interval(list(kept.values()))
    pairs = [{i: cell[s] for i, cell in enumerate(runs)} for s in kept]
    lost = sorted({s for cell in runs for s, r in cell.items() if "failed" in r and s < planned})
    waiting = "no pair" if runs and all(any(s < planned for s in cell) for cell in runs) else "no runs yet"
    return {"id": name, "claim": claim, "figure": figure, "mean": mean, "low": low, "high": high, "n": n,
            "planned": planned, "verdict": verdict(low, high, kind, side, tolerance) if n else waiting,
            "commits": any(map(mixed, pairs)), "lost": lost}


def signed(value):
    return f"{value:+.4f}"


def mah_rows(records, failed=None):
    """The MAH claims of docs/claims.md, in its order, from the runs of the declared regime;
    `failed`: {(dataset, method, bits, seed): reason} of the runs that failed."""
    series = series_of([r for r in records if declared_regime(r)])
    cells = {d: {} for d in ("cifar10", "flickr25k")}
    for (dataset, *_), by_cell in sorted(series.items()):
        if dataset in cells:
            for key, by_seed in by_cell.items():
                cells[dataset].setdefault(key, {}).update(by_seed)
    for (dataset, method, bits, seed), reason in (failed or {}).items():
        if dataset in cells:
            cells[dataset].setdefault((method, bits), {})[seed] = {"failed": reason}

    def cell(dataset, method, bits):
        return cells[dataset].get((method, bits), {})

    def compare(dataset, a, b, metric):  # the paired differences of cells a - b, and their runs
        return paired(values(cell(dataset, *a), metric), values(cell(dataset, *b), metric)), \
            [cell(dataset, *a), cell(dataset, *b)]

    rows, k = [], 0
    for method in ("MAH-flat", "MAH-cascade"):  # A1-A10: MAH - ADSH, CIFAR-10
        for b in MAH_BITS:
            k += 1
            pub = PUBLISHED_MAP5000[("cifar10", method)][b] - PUBLISHED_MAP5000[("cifar10", "ADSH")][b]
            # where the figure puts MAH behind ADSH, against the text, the figure decides
            claim = f"{method} beats ADSH, CIFAR-10, {b} bits" if pub > 0 else \
                f"{method} behind ADSH, CIFAR-10, {b} bits (figure; the text says ahead)"
            rows.append(row(f"A{k}", claim, f"≈{signed(pub)}",
                            *compare("cifar10", (method, b), ("ADSH", b), "map_tie_aware"), "sign", CIFAR_SEEDS[b],
                            side=1 if pub > 0 else -1))
    for b in (4, 8, 12):  # A11-A13: MIRFlickr-25K, the cascade script's ADSH
        k += 1
        rows.append(row(f"A{k}", f"MAH-cascade beats ADSH, MIRFlickr-25K, {b} bits", "MAH ahead",
                        *compare("flickr25k", ("MAH-cascade", b), ("ADSH", b), "map_at_5000"), "sign",
                        FLICKR_SEEDS[b]))
    gap = {b: compare("cifar10", ("MAH-cascade", b), ("MAH-flat", b), "map_tie_aware") for b in MAH_BITS}
    published = {b: PUBLISHED_MAP[("cifar10", "MAH-cascade")][b] - PUBLISHED_MAP[("cifar10", "MAH-flat")][b]
                 for b in MAH_BITS}
    for i, b in enumerate(MAH_BITS, 1):  # B1-B5
        rows.append(row(f"B{i}", f"cascade beats flat, CIFAR-10, {b} bits", signed(published[b]), *gap[b],
                        "sign", CIFAR_SEEDS[b]))
    most = []
    for i, b in enumerate(MAH_BITS[1:], 6):  # B6-B9: the 4-bit gap over the others
        most.append(row(f"B{i}", f"cascade - flat larger at 4 bits than at {b}", signed(published[4] - published[b]),
                        paired(gap[4][0], gap[b][0]), gap[4][1] + gap[b][1], "sign",
                        min(CIFAR_SEEDS[4], CIFAR_SEEDS[b])))
    rows += most
    verdicts = {r["verdict"] for r in most}
    overall = "fails" if "fails" in verdicts else "holds" if verdicts == {"holds"} else \
        "no runs yet" if verdicts == {"no runs yet"} else "inconclusive"
    # judged on B6-B9 together: interim while any of them is, its seeds theirs
    rows.append({"id": "B10", "claim": "cascade - flat largest at 4 bits (B6-B9 all)", "figure": "yes", "mean": None,
                 "low": None, "high": None, "n": min(r["n"] for r in most), "planned": min(r["planned"] for r in most),
                 "verdict": overall, "interim": any(map(interim, most)), "commits": any(r["commits"] for r in most),
                 "seeds": "seeds of B6-B9: " + ", ".join(f"{r['n']} of {r['planned']}" for r in most),
                 "lost": sorted({s for r in most for s in r["lost"]})})
    for i, b in enumerate(MAH_BITS, 1):  # C1-C5: MIRFlickr-25K, level where the figure shows them level
        pub = PUBLISHED_MAP5000[("flickr25k", "MAH-cascade")][b] - PUBLISHED_MAP5000[("flickr25k", "MAH-flat")][b]
        level = abs(pub) <= LEVEL + 1e-12  # "within ±0.01" of a read-off value, its end included
        rows.append(row(f"C{i}", f"cascade {'level with' if level else 'beats' if pub > 0 else 'behind'} flat, "
                                 f"MIRFlickr-25K, {b} bits", f"≈{signed(pub)}",
                        *compare("flickr25k", ("MAH-cascade", b), ("MAH-flat", b), "map_at_5000"),
                        "level" if level else "sign", FLICKR_SEEDS[b], side=1 if pub > 0 else -1, tolerance=LEVEL))
    rows.append(row("D1", "8-bit MAH-cascade not below 48-bit ADSH, CIFAR-10", "+0.0039",
                    *compare("cifar10", ("MAH-cascade", 8), ("ADSH", 48), "map_tie_aware"),
                    "not below", min(CIFAR_SEEDS[8], CIFAR_SEEDS[48]), tolerance=LEVEL))
    k = 0
    for what, metric in (("faster", at_iteration(EARLY)), ("more stable", late_change)):
        for method in ("MAH-flat", "MAH-cascade"):
            for b in (4, 12):
                k += 1
                # stability: a smaller late change is better, so ADSH - MAH has the paper's side > 0
                a, z = ((method, b), ("ADSH", b)) if what == "faster" else (("ADSH", b), (method, b))
                rows.append(row(f"E{k}", f"{method} {what} than ADSH, CIFAR-10, {b} bits", "MAH ahead",
                                *compare("cifar10", a, z, metric), "sign", CIFAR_SEEDS[b]))
    return rows


def mmhh_cells(records, chosen, failed=None, opt_test=False):
    """{(dataset, optimiser, protocol, rate): {loss: {seed: record}}} of the MMHH runs a claim
    may use: 32 bits, the declared regime, the default test convention (--opt-test's where
    `opt_test`), and each loss in the configuration the tuning chose for the data set (a loss
    not yet chosen has none); `failed`: {(dataset, optimiser, protocol, rate, loss, seed):
    reason} of the final runs that failed."""
    cells = {}
    for (dataset, opt, protocol, rate, method, seed), reason in (failed or {}).items():
        cells.setdefault((dataset, opt, protocol, rate), {}).setdefault(method, {})[seed] = {"failed": reason}
    for r in records:
        if r["bits"] != MMHH_BITS or not declared_regime(r) or r["metrics"]["opt_test"] != opt_test or \
                not tuned(r, chosen):
            continue
        key = (r["dataset"], optimiser(r), *setting(r))
        cells.setdefault(key, {}).setdefault(r["method"], {})[r["seed"]] = r
    return cells


def retained(noisy, clean):
    """{seed: MAP(P) / MAP(0)} over the seeds with both (a clean MAP of 0 retains nothing defined)."""
    return {s: noisy[s] / clean[s] for s in sorted(set(noisy) & set(clean)) if clean[s] > 0}


def mmhh_rows(records, validation, failed=(), opt_test=False):
    """The MMHH claims of docs/claims.md (M, Mr, N, U rows), from the runs of the configurations
    the tuning records `validation` chose; a row whose losses are not chosen yet has no runs.
    `failed`: results/failures.jsonl's entries (utils.report.failures); `opt_test`: the same rows
    on the --opt-test records, which docs/claims.md reports and lets decide nothing."""
    cells = mmhh_cells(records, chosen_rows(validation, failed),
                       failures.failed(failed, "final"), opt_test)

    def runs(dataset, loss, optimiser="adam", protocol="standard", rate=0.0):
        return cells.get((dataset, optimiser, protocol, rate), {}).get(loss, {})

    def primary(by_seed):
        return values(by_seed, "map_within_radius")

    def compare(a, b):  # MMHH - rival on the primary metric, and the runs
        return paired(primary(a), primary(b)), [a, b]

    rows, released = [], []
    for rival, claim in RIVALS:  # M1-M6, and M1r-M6r under the released optimiser
        for dataset, shown in DATASETS.items():
            k = len(rows) + 1
            rows.append(row(f"M{k}", f"{claim}, {shown}", "MMHH ahead",
                            *compare(runs(dataset, "MMHH"), runs(dataset, rival)), "sign", MMHH_SEEDS["adam"]))
            second = row(f"M{k}r", f"{claim}, {shown}, released optimiser", "MMHH ahead",
                         *compare(runs(dataset, "MMHH", "sgd"), runs(dataset, rival, "sgd")), "sign",
                         MMHH_SEEDS["sgd"])
            if {rows[-1]["verdict"], second["verdict"]} == {"holds", "fails"}:
                second["note"] = "depends on the optimiser"
            released.append(second)
    rows += released
    names = dict(LOSSES)
    noisy = [("DCH", rate) for rate in NOISE] + [("Hamming", rate) for rate in NOISE]
    for k, (rival, rate) in enumerate(noisy, 1):  # N1-N4: MMHH - X under label noise
        rows.append(row(f"N{k}", f"MMHH better than {names[rival]} at label noise {rate:g}, CIFAR-10",
                        "MMHH ahead", *compare(runs("cifar10", "MMHH", rate=rate), runs("cifar10", rival, rate=rate)),
                        "sign", MMHH_SEEDS["adam"]))
    for k, (rival, rate) in enumerate(noisy, 5):  # N5-N8: the share of its clean MAP each keeps, paired by seed
        used = {loss: (runs("cifar10", loss, rate=rate), runs("cifar10", loss)) for loss in ("MMHH", rival)}
        keeps = {loss: retained(primary(noisy_runs), primary(clean_runs))
                 for loss, (noisy_runs, clean_runs) in used.items()}
        rows.append(row(f"N{k}", f"MMHH degrades less than {names[rival]} at label noise {rate:g}, "
                                 "CIFAR-10", "MMHH ahead", paired(keeps["MMHH"], keeps[rival]),
                        [*used["MMHH"], *used[rival]], "sign", MMHH_SEEDS["adam"]))
    for k, rival in enumerate(("DCH", "Hamming"), 1):  # U1-U2
        rows.append(row(f"U{k}", f"MMHH better than {names[rival]} on unseen classes, CIFAR-10",
                        "MMHH ahead", *compare(runs("cifar10", "MMHH", protocol="unseen"),
                                               runs("cifar10", rival, protocol="unseen")), "sign",
                        MMHH_SEEDS["adam"]))
    return rows


def all_rows(records):
    """Every declared row, MAH's then MMHH's, from load_records' groups (MMHH's claims use only
    the runs of the tuned configurations)."""
    lost = records.get("failed", [])
    return mah_rows(records.get("mah", []), failures.failed(lost, "mah")) + mmhh_rows(*mmhh_inputs(records))


def mmhh_inputs(records):
    """mmhh_rows' records, tuning records and failures, from load_records' groups."""
    return records.get("tuned", []) + records.get("released", []), records.get("validation", []), \
        records.get("failed", [])


def convention_note(rows, records, metrics_page, figures=None):
    """The line under a claims table that compares each judged MMHH row of `rows` (all_rows'
    rows, or some of them) with the same row under --opt-test: the rows whose mean difference
    takes the other sign there, each with its --opt-test figures (or, given `figures`, the link
    to the page that has them, the rows named only), or that none does; [] when no MMHH row is
    judged. `metrics_page`: the link to docs/metrics.md from the page the table is on."""
    other = {r["id"]: r for r in mmhh_rows(*mmhh_inputs(records), opt_test=True)}
    judged = [r for r in rows if r["id"] in other and r["mean"] is not None]
    if not judged:
        return []
    # figures only: the two-commit mark and its footnote belong to the declared rows' table
    flipped = [r["id"] for r in judged
               if other[r["id"]]["mean"] is not None and r["mean"] * other[r["id"]]["mean"] < 0]
    listed = f"{ranges(flipped)} ([figures]({figures}))" if figures else \
        "; ".join(f"{k} {ours({**other[k], 'commits': False})}" for k in flipped)
    said = (f"these rows' mean differences take the other sign: {listed}" if flipped else
            "every judged MMHH row's mean difference keeps its sign")
    return [f"Under `--opt-test` (an empty ball left out, not counted 0: [metrics]({metrics_page})), which "
            f"decides nothing, {said}."]


# past these shares the radius-2 balls get a word beside the verdicts: an empty ball scores 0 under
# the default convention (--opt-test leaves it out); a ball holding much of the database returns it
EMPTY_NOTED, CROWDED_NOTED = 0.10, 0.25


def ball_note(records):
    """The line under a claims table naming, per setting of the MMHH claims' runs (the tuned
    configurations, default convention), the losses whose radius-2 balls are empty for more than
    EMPTY_NOTED of the test queries or hold more than CROWDED_NOTED of the database, as means over
    seeds; [] when none does or no run recorded its balls (`records`: load_records' groups)."""
    runs, validation, failed = mmhh_inputs(records)
    cells = mmhh_cells(runs, chosen_rows(validation, failed), failures.failed(failed, "final"))
    what = (("empty_ball_share", EMPTY_NOTED, f"empty for more than {EMPTY_NOTED:.0%} of the test queries"),
            ("ball_database_share", CROWDED_NOTED, f"holding more than {CROWDED_NOTED:.0%} of the database"))
    parts = []
    for field, limit, said in what:
        found = []
        for key, by_loss in sorted(cells.items()):
            # a failed run's entry has no metrics, a run filed before the statistics no balls
            shares = {name: [r["metrics"]["balls"][field] for r in by_loss.get(loss, {}).values()
                             if "balls" in r.get("metrics", {})] for loss, name in LOSSES}
            named = [f"{name} {np.mean(v):.3f}" for name, v in shares.items() if v and np.mean(v) > limit]
            if named:
                found.append(f"{DATASETS.get(key[0], key[0])}, {dict(FINAL_SETTINGS)[key[1:]]}: {', '.join(named)}")
        parts += [f"{said} in {'; '.join(found)}"] if found else []
    if not parts:
        return []
    return [f"Radius-2 balls behind the MMHH rows (default convention, mean over seeds): {'; and '.join(parts)}."]


def interim(r):
    """Whether a judged row rests on fewer seeds than docs/claims.md declares for it, those that
    failed aside (a row judged on other rows says so itself)."""
    return r["interim"] if "interim" in r else 0 < r["n"] < r["planned"] - len(r.get("lost", ()))


# after the seeds of a row one of whose pairs ran at two commits (the same draws, arithmetic
# that may differ in the last digits: docs/claims.md)
OTHER_COMMITS = "‡"


def ours(r):
    """A row's 'ours' cell: the mean difference [95% interval] and its seeds, as 'n of N seeds'
    while fewer than the declared N have both runs, marked where a pair's runs ran at two commits."""
    seeds = r.get("seeds") or (f"{r['n']} of {r['planned']} seeds" if interim(r)
                               else f"{r['n']} seed{'s' * (r['n'] != 1)}")
    seeds += OTHER_COMMITS * bool(r.get("commits"))
    if r.get("lost"):
        seeds += f" (seed{'s' * (len(r['lost']) > 1)} {', '.join(map(str, r['lost']))} failed)"
    if r["mean"] is None:
        return r["verdict"] if not r["n"] else seeds
    if r["low"] is None:
        return f"{signed(r['mean'])}, {seeds}"
    return f"{signed(r['mean'])} [{signed(r['low'])}, {signed(r['high'])}], {seeds}"


def ranges(ids):
    """'A1-A13, D1, M1r-M6r' for ids in order: runs of one letter and suffix with consecutive
    numbers joined."""
    runs = []
    for name in ids:
        letter, number, suffix = re.fullmatch(r"([A-Z])(\d+)(\w*)", name).groups()
        number = int(number)
        if runs and runs[-1][0] == letter and runs[-1][3] == suffix and runs[-1][2] == number - 1:
            runs[-1][2] = number
        else:
            runs.append([letter, number, number, suffix])
    return ", ".join(f"{a}{b}{s}" + (f"-{a}{c}{s}" if c > b else "") for a, b, c, s in runs)


def claims_table(rows):
    return table(["", "claim", "paper", "ours: mean difference [95% interval], seeds", "verdict"],
                 [[r["id"], r["claim"], r["figure"], ours(r),
                   r["verdict"] + (f" ({r['note']})" if r.get("note") else "")] for r in rows])


def reruns(records):
    """The runs filed in place of an earlier run of the same cell and seed (filing --replace),
    each with its primary metric beside the replaced run's: [] when there are none."""
    found = [r for group in records.values() for r in group if isinstance(r.get("replaces"), dict)]
    if not found:
        return []
    rows = []
    for r in sorted(found, key=lambda r: (r["dataset"], r["method"], r["bits"], r["seed"])):
        old = r["replaces"]
        metric = "map_tie_aware" if "map_tie_aware" in r["metrics"] else "map_within_radius"
        before, now = old.get("metrics", {}).get(metric), r["metrics"][metric]
        rows.append([f"{DATASETS.get(r['dataset'], r['dataset'])}, {r['method']}, {r['bits']} bits, seed {r['seed']}",
                     f"`{str(old.get('git_commit'))[:7]}` -> `{str(r.get('git_commit'))[:7]}`",
                     "tie-aware MAP" if metric == "map_tie_aware" else "MAP@H<=2",
                     "n/a" if before is None else f"{before:.4f}", f"{now:.4f}",
                     "n/a" if before is None else f"{now - before:+.4f}"])
    return ["", f"**Runs filed in place of an earlier run of the same cell and seed** ({len(rows)}): the replaced "
                "run's figure beside the one the tables now use.", ""] + \
        table(["run", "commits", "metric", "replaced", "now", "difference"], rows)


def other_commits(rows, rule):
    """The line under a claims table that explains its mark, where a row has it; `rule`: the link
    to the rule, from the page the table is on."""
    if not any(r.get("commits") for r in rows):
        return []
    return [f"{OTHER_COMMITS}: one or more of the row's pairs ran at two commits: the same seeded draws, with "
            f"arithmetic that may differ in the last digits ([the rule]({rule}))."]


def claims_section(records):
    """docs/claims.md's results: every declared row, judged or waiting for its runs, and the runs
    filed in place of earlier ones (`records`: load_records' groups)."""
    rows = all_rows(records)
    marked = other_commits(rows, "#the-rule") + convention_note(rows, records, "metrics.md") + ball_note(records)
    return "\n".join(["Written by `python -m utils.report` from the results files; edits here are overwritten.",
                      ""] + claims_table(rows) + [line for note in marked for line in ("", note)] + reruns(records)
                     + failed_runs(records.get("failed", [])))


def failed_runs(entries):
    """The table of the runs results/failures.jsonl records as failed: [] when none did."""
    if not entries:
        return []
    rows = [[f"`{e['folder']}`", e["reason"], f"`{str(e.get('git_commit'))[:7]}`"] for e in entries]
    return ["", f"**Runs that failed** ({len(rows)}): left out of their rows, as the rule declares, and not made "
                "again.", ""] + table(["run", "reason", "commit"], rows)


def claims_glance(records):
    """The README's claims at a glance: every judged row, and the declared rows still without runs
    named in one line (`records`: load_records' groups)."""
    rows = all_rows(records)
    judged = [r for r in rows if r["n"]]
    waiting = [r["id"] for r in rows if not r["n"] and r["verdict"] != "no pair"]
    counts = {v: sum(r["verdict"] == v for r in judged) for v in ("holds", "fails", "inconclusive")}
    short = sum(map(interim, judged))
    rest, verdicts = ("rests", "its verdict is") if short == 1 else ("rest", "their verdicts are")
    head = (f"**Claims at a glance** ([docs/claims.md](docs/claims.md); ≈: read off a figure): of "
            f"{len(judged)} judged, {counts['holds']} hold, {counts['fails']} fail, {counts['inconclusive']} are "
            "inconclusive" + (f"; {short} of them {rest} on fewer seeds than declared (\"n of N seeds\"), so "
                              f"{verdicts} interim." if short else "."))
    unpaired = [r["id"] for r in rows if r["verdict"] == "no pair"]
    tail = ([f"No runs yet: {ranges(waiting)}."] if waiting else []) + \
        ([f"No pair yet (both sides ran, no seed in common): {ranges(unpaired)}."] if unpaired else [])
    # the README names the rows that flip; their --opt-test figures are on docs/claims.md
    marked = other_commits(judged, "docs/claims.md#the-rule") + \
        convention_note(judged, records, "docs/metrics.md", "docs/claims.md#results") + ball_note(records)
    lost = records.get("failed", [])
    if lost:
        tail.append(f"Runs that failed: {len(lost)}, left out of the rows that name them as the rule declares "
                    "([docs/claims.md](docs/claims.md#results) gives each with its reason).")
    return "\n".join([head, ""] + claims_table(judged) + [line for note in tail + marked for line in ("", note)])
