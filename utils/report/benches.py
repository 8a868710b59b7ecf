"""The README's and docs' sentences and tables from the JSON summaries the benches write in
bench/out/ (`python bench/own_images.py`, `bench_index.py`, `bench_suite.py`,
`bench_metrics.py`, `bench_data.py`, `bench_threading.py`, `bench_distributed.py`,
`mutation_check.py`), so that
their figures are measured, never typed. Without a summary the text between its markers
stays as it is."""
import math
import numbers
import os
import statistics

from utils.errors import UserError
from utils.report.tables import table
from utils.runs import read_json

OWN_IMAGES, BENCH_INDEX, BENCH_SUITE = "own_images.json", "bench_index.json", "bench_suite.json"
BENCH_METRICS, BENCH_METRICS_CUDA = "bench_metrics.json", "bench_metrics_cuda.json"
BENCH_DATA, BENCH_DATA_CUDA = "bench_data.json", "bench_data_cuda.json"
BENCH_THREADING, BENCH_DISTRIBUTED = "bench_threading.json", "bench_distributed.json"
MUTATION_CHECK = "mutation_check.json"
MUTATION_STATUSES = ("killed", "SURVIVED", "stale")
SECONDS = ("mah_training", "mmhh_training", "index_command")  # the ones the own-images sentence shows
# the README's case: radius 2 (the metrics' Hamming ball) over 10^7 48-bit codes of each kind
SHOWN = {"n": 10 ** 7, "bits": 48, "search": "radius 2"}
SEARCHED_BY = {"IndexBinaryMultiHash": "multi-index hashing", "IndexBinaryHash": "one hash table",
               "block scan": "the padded codes scanned a block at a time",
               "distinct codes": "the distinct codes scanned, then their items taken"}  # the sentence's words


def summary_path(readme, name):
    """bench/out/<name> beside the README, where the benches write their summaries."""
    return os.path.join(os.path.dirname(readme), "bench", "out", name)


def checked(values, path, what, script):
    """`values` {name: (value, type)}: each value of its type (a bool counts as no number),
    else a UserError naming the first that is not and the command that writes the summary."""
    for name, (value, kind) in values.items():
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            noun = "number " if kind in (int, numbers.Real) else ""
            raise UserError(f"{what} summary {path} has no {noun}{name}; write it again with python {script}")


def commit_label(commit):
    """A summary's commit as the text shows it: 7 characters, and -dirty where the bench ran from
    uncommitted changes."""
    return f"{commit[:7]}{'-dirty' if commit.endswith('-dirty') else ''}"


def short(seconds):
    """Seconds as the sentence prints them: a tenth below 10 s, whole seconds above."""
    return f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"


def own_images_sentence(path):
    """One sentence from the summary at `path`: the images, the cores, the training seconds of
    the MAH script and train_mmhh.py from their results records, and the whole index command."""
    summary = read_json(path, "own-images summary", keys=("images", "cores", "seconds"))
    seconds = summary["seconds"] if isinstance(summary["seconds"], dict) else {}
    checked({"images": (summary["images"], int), "cores": (summary["cores"], int),
             **{f"seconds.{k}": (seconds.get(k), numbers.Real) for k in SECONDS}},
            path, "own-images", "bench/own_images.py")
    return (f"{summary['images']:,} CIFAR-10 JPEGs, {summary['cores']}-core CPU: training "
            f"{short(seconds['mah_training'])} s and {short(seconds['mmhh_training'])} s, indexing "
            f"{short(seconds['index_command'])} s with start-up (`bench/own_images.py`).")


def suite_sentence(path):
    """docs/testing.md's sentence on the time of the whole suite, from bench/bench_suite.py's
    summary at `path`; a summary of part of the suite is refused."""
    summary = read_json(path, "suite summary", keys=("commit", "cores", "seconds", "passed", "skipped", "failed"))
    checked({"commit": (summary["commit"], str), "cores": (summary["cores"], int),
             "seconds": (summary["seconds"], numbers.Real), "passed": (summary["passed"], int),
             "skipped": (summary["skipped"], int), "failed": (summary["failed"], int)},
            path, "suite", "bench/bench_suite.py")
    if summary.get("selection") or summary["failed"]:
        raise UserError(f"suite summary {path} is of part of the suite or of a failing one; write it again with "
                        "python bench/bench_suite.py (no selection)")
    return (f"Its time, install aside: {summary['seconds']:.0f} s (about {summary['seconds'] / 60:.0f} minutes) on "
            f"a {summary['cores']}-core CPU with nothing else running, at `{commit_label(summary['commit'])}`: "
            f"{summary['passed']:,} passed, "
            f"{summary['skipped']:,} skipped (`python bench/bench_suite.py`).")


def size(n):
    """10^7 for a power of ten, else the count with thousands separators."""
    e = round(math.log10(n)) if n > 0 else 0
    return f"10^{e}" if 10 ** e == n else f"{n:,}"


def slowest(cases):
    """The sentence on the case where search did least well against the padded scan: below 1x,
    it says that search was the slower there."""
    if not cases:
        return ""
    c = min(cases, key=lambda c: c["ratios"]["padded"])
    ratio = c["ratios"]["padded"]
    return (f" Lowest against the padded scan: {ratio:.2f}x ({c['kind']} {c['bits']}-bit codes, N = {size(c['n'])}, "
            f"{c['search']}, {c['searched_by']})" + (": search was the slower there." if ratio < 1 else "."))


def encoding(encode, path):
    """The sentence on `build`'s encoding against the forward pass alone, where the bench timed it."""
    if encode is None:
        return ""
    encode = encode if isinstance(encode, dict) else {}
    checked({f"encode.{k}": (encode.get(k), kind) for k, kind in (
        ("model", str), ("images", int), ("workers", int), ("build_images_per_second", numbers.Real),
        ("forward_images_per_second", numbers.Real), ("decode_images_per_second", numbers.Real))},
            path, "search", "bench/bench_index.py")
    build, forward, decode = (encode[f"{k}_images_per_second"] for k in ("build", "forward", "decode"))
    return (f" `build` encoded {encode['images']:,} images with {encode['model']} at {build / forward:.2f} times "
            f"the speed of the model's forward pass alone on the same batches ({build:.0f} against {forward:.0f} "
            f"images/s; decoding workers: {encode['workers']}; decoding alone, in one process, {decode:.0f} "
            "images/s).")


def index_figures(path):
    """The README's sentence and docs/index.md's table from the summary at `path`: search (the
    structure `build` chose, or the block scan) against FAISS's IndexBinaryFlat and the padded
    scan, as ratios of medians (above 1x, search is faster)."""
    summary = read_json(path, "search summary", keys=("commit", "cores", "faiss", "queries", "rounds", "cases"))
    cases = summary["cases"] if isinstance(summary["cases"], list) and summary["cases"] else [None]
    checked({"commit": (summary["commit"], str), "cores": (summary["cores"], int),
             "faiss": (summary["faiss"], str), "queries": (summary["queries"], int),
             "rounds": (summary["rounds"], int)}, path, "search", "bench/bench_index.py")
    for i, case in enumerate(cases):
        case = case if isinstance(case, dict) else {}
        ratios = case.get("ratios") if isinstance(case.get("ratios"), dict) else {}
        checked({f"cases[{i}].{k}": (case.get(k), kind) for k, kind in (
                    ("kind", str), ("n", int), ("bits", int), ("search", str), ("searched_by", str),
                    ("items_per_query", numbers.Real), ("identical", bool))}
                | {f"cases[{i}].ratios.{k}": (ratios.get(k), numbers.Real) for k in ("faiss", "padded")},
                path, "search", "bench/bench_index.py")
    shown, top = {}, {}
    for kind in ("random", "clustered"):
        found = [c for c in cases if c["kind"] == kind and all(c[k] == v for k, v in SHOWN.items())]
        if not found:
            raise UserError(f"search summary {path} has no case of {kind} codes, N = {size(SHOWN['n'])}, "
                            f"{SHOWN['bits']} bits, {SHOWN['search']}; write it again with python "
                            "bench/bench_index.py (its default sizes)")
        c = found[0]
        shown[kind] = (f"{c['ratios']['faiss']:.1f}x and {c['ratios']['padded']:.1f}x "
                       f"({SEARCHED_BY.get(c['searched_by'], c['searched_by'])})")
        found = [c for c in cases if c["kind"] == kind and c["n"] == SHOWN["n"] and c["bits"] == SHOWN["bits"]
                 and c["search"].startswith("top ")]
        if found:
            top[kind] = (found[0]["search"], f"{found[0]['ratios']['padded']:.2f}x")
    tops = "" if not top else (f"; {next(iter(top.values()))[0]} with ties by item id, against FAISS's heap scan of "
                               "the padded codes (ties in its own order): "
                               + ", ".join(f"{kind} {ratio}" for kind, (_, ratio) in top.items()))
    sentence = (f"{SHOWN['search'].capitalize()} over {size(SHOWN['n'])} {SHOWN['bits']}-bit codes, speed-up over "
                f"FAISS's flat scan and a padded scan: random {shown['random']}, clustered {shown['clustered']}"
                f"{tops} (`python bench/bench_index.py`, [docs](docs/index.md#benchmark)).")
    about = (f"Commit `{commit_label(summary['commit'])}`, {summary['cores']} cores, "
             f"faiss {summary['faiss']}, {summary['queries']:,} queries, medians of {summary['rounds']} timed "
             "calls a side; a ratio is the other side's median over search's (above 1x, search is faster)"
             + (" (`--quick`: a check that the bench runs, not figures)." if summary.get("quick") else ".")
             + (" The bench stopped before its last set of codes: only these cases were measured."
                if summary.get("complete") is False else "") + slowest(cases) + encoding(summary.get("encode"), path))
    rows = [[c["kind"], size(c["n"]), str(c["bits"]), c["search"], c["searched_by"], f"{c['items_per_query']:.1f}",
             f"{c['ratios']['padded']:.2f}x", f"{c['ratios']['faiss']:.2f}x", "yes" if c["identical"] else "NO"]
            for c in cases]
    head = ["codes", "N", "K", "search", "searched by", "items a query", "vs padded scan", "vs IndexBinaryFlat",
            "same answers"]
    return sentence, "\n".join([about, ""] + table(head, rows))


def positive(values):
    """Whether `values` is a non-empty list of positive numbers (a bench's seconds or rates)."""
    return isinstance(values, list) and bool(values) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0 for v in values)


def timings(case, path, i):
    """{side: (median, best)} of a metrics-bench case, each side's calls a non-empty list of seconds."""
    seconds = case.get("seconds") if isinstance(case.get("seconds"), dict) else {}
    out = {}
    for side in ("classic", "library", "baseline"):
        times = seconds.get(side)
        if side == "baseline" and times is None:
            continue
        checked({f"cases[{i}].seconds.{side}": (times if positive(times) else None, list)}, path, "metrics",
                "bench/bench_metrics.py")
        out[side] = (statistics.median(times), min(times))
    return out


def metrics_block(path):
    """docs/metrics.md's text for the summary at `path`: what ran where, the full-ranking table,
    the mAP@5000 table and how far the classic loop's MAP lies from the library's. Times are
    medians of the timed calls; above 1x the library is the faster."""
    summary = read_json(path, "metrics summary", keys=("commit", "command", "device", "cores", "repeat", "cases"))
    checked({"commit": (summary["commit"], str), "command": (summary["command"], str),
             "device": (summary["device"], str), "cores": (summary["cores"], int), "repeat": (summary["repeat"], int),
             "seconds": (summary.get("seconds"), numbers.Real)}, path, "metrics", "bench/bench_metrics.py")
    cases = summary["cases"] if isinstance(summary["cases"], list) and summary["cases"] else [None]
    for i, case in enumerate(cases):
        case = case if isinstance(case, dict) else {}
        maps = case.get("map") if isinstance(case.get("map"), dict) else {}
        checked({f"cases[{i}].case": (case.get("case"), str), f"cases[{i}].bits": (case.get("bits"), int),
                 f"cases[{i}].queries": (case.get("queries"), int), f"cases[{i}].database": (case.get("database"), int),
                 f"cases[{i}].other_load": (case.get("other_load"), numbers.Real)}
                | {f"cases[{i}].map.{k}": (maps.get(k), numbers.Real) for k in ("classic", "library")},
                path, "metrics", "bench/bench_metrics.py")
        case["timings"] = timings(case, path, i)
    baseline = all("baseline" in c["timings"] for c in cases)
    where = where_it_ran(summary) + ("" if summary["device"] == "cpu" else ", the classic loop on the CPU")
    versions = ", ".join(f"{k} {summary[k]}" for k in ("torch", "numpy", "numba") if summary.get(k))
    calls = f"{summary['repeat']} timed call{'s' if summary['repeat'] != 1 else ''} a side"
    parts = [f"{where}: `{summary['command']}` at commit `{commit_label(summary['commit'])}`, {summary['cores']} "
             f"cores ({versions}); {calls}, {summary['seconds'] / 60:.1f} minutes in all"
             + (f"; the baseline is {summary['baseline']}" if baseline and summary.get("baseline") else "") + "."
             + (f" Sizes divided by {summary.get('scale', 10)} (`--small`, `--scale`): a quick look, not figures."
                if summary.get("small") else "")
             + (" The bench stopped before its last case: only these were measured."
                if summary.get("complete") is False else "")]

    def row(label, c, extra=()):
        (c_med, c_best), (l_med, l_best) = c["timings"]["classic"], c["timings"]["library"]
        cells = [label, f"{c_med:.3g}", f"{l_med:.3g}", f"{c_med / l_med:.1f}x", f"{c_best / l_best:.1f}x"]
        if baseline:
            b_med, b_best = c["timings"]["baseline"]
            cells += [f"{b_med:.3g}", f"{b_med / l_med:.2f}x / {b_best / l_best:.2f}x"]
        return cells + list(extra) + [f"{c['other_load']:.2f}"]

    def head(first, extra=()):
        return ([first, "classic median s", "library median s", "ratio of medians", "ratio of bests"]
                + (["baseline median s", "vs baseline (medians / bests)"] if baseline else []) + list(extra)
                + ["other load"])

    full = [c for c in cases if c["case"] == "full ranking"]
    top = [c for c in cases if c["case"] != "full ranking"]
    if full:
        parts += ["", *table(head(f"full ranking, {full[0]['queries']:,} x {full[0]['database']:,}"),
                             [row(f"{c['bits']} bits, ties=\"{c.get('ties')}\"", c) for c in full])]
    if top:
        def peak(c):
            mb = c.get("peak_mb") if isinstance(c.get("peak_mb"), dict) else {}
            return " / ".join(f"{mb[k]:.0f}" if isinstance(mb.get(k), numbers.Real) else "-"
                              for k in ("classic", "library"))
        parts += ["", *table(head(f"{top[0]['case']}, {top[0]['queries']:,} x {top[0]['database']:,}",
                                  ["peak MB classic / library"]),
                             [row(f"{c['bits']} bits", c, [peak(c)]) for c in top])]
    gaps = {}
    for c in cases:
        kind = "with tie-aware MAP" if c.get("ties") == "expected" else "with ties in index order"
        gaps[kind] = max(gaps.get(kind, 0.0), abs(c["map"]["classic"] - c["map"]["library"]))
    parts += ["", "Largest difference between the classic loop's MAP and the library's: "
              + ", ".join(f"{gap:.4f} {kind}" for kind, gap in sorted(gaps.items())) + "."]
    return "\n".join(parts)


def metrics_tables(*paths):
    """docs/metrics.md's benchmark section from the summaries at `paths` (CPU, then CUDA), one
    block each."""
    return "\n\n".join(metrics_block(p) for p in paths)


def where_it_ran(summary):
    """'CPU', or 'GPU (its name)', as a bench block starts."""
    if summary["device"] == "cpu":
        return "CPU"
    return f"GPU{' (' + summary['device_name'] + ')' if summary.get('device_name') else ''}"


def data_block(path):
    """docs/data.md's text for bench/bench_data.py's summary at `path`: each pipeline's images/s
    beside the forward+backward images/s of the model it feeds (medians of the rounds), their
    ratio, and which pipeline comes closest to its model."""
    summary = read_json(path, "input-pipeline summary", keys=("commit", "command", "device", "cores", "batch",
                                                               "rounds", "seconds", "pairs", "labels", "rates"))
    checked({"commit": (summary["commit"], str), "command": (summary["command"], str),
             "device": (summary["device"], str), "cores": (summary["cores"], int), "batch": (summary["batch"], int),
             "rounds": (summary["rounds"], int), "seconds": (summary["seconds"], numbers.Real),
             "labels": (summary["labels"], dict), "rates": (summary["rates"], dict)},
            path, "input-pipeline", "bench/bench_data.py")
    pairs = summary["pairs"] if isinstance(summary["pairs"], list) and summary["pairs"] else [None]
    for i, pair in enumerate(pairs):
        pair = pair if isinstance(pair, dict) else {}
        checked({f"pairs[{i}].{side}": (pair.get(side), str) for side in ("pipeline", "model")}
                | {f"labels.{pair.get(side)}": (summary["labels"].get(pair.get(side)), str)
                   for side in ("pipeline", "model")}, path, "input-pipeline", "bench/bench_data.py")
    median = positive_lists(summary, "rates", sorted({p[side] for p in pairs for side in ("pipeline", "model")}), path,
                            "input-pipeline", "bench/bench_data.py")
    rows, ratios = [], []
    for pair in pairs:
        pipe, model = pair["pipeline"], pair["model"]
        ratios.append((median[pipe] / median[model], summary["labels"][pipe]))
        rows.append([summary["labels"][pipe], f"{median[pipe]:,.0f}", summary["labels"][model], f"{median[model]:,.1f}"
                     if median[model] < 10 else f"{median[model]:,.0f}", f"{ratios[-1][0]:.1f}x"])
    rounds = f"{summary['rounds']} round{'s' if summary['rounds'] != 1 else ''}"
    about = (f"{where_it_ran(summary)}: `{summary['command']}` at commit `{commit_label(summary['commit'])}`, "
             f"{summary['cores']} cores, torch {summary.get('torch')}, batch {summary['batch']}; images/s, medians of "
             f"{rounds}, each measurement about {summary['seconds']:g} s, interleaved."
             + (" The bench stopped before its last round: the medians are of the rounds measured."
                if summary.get("complete") is False else ""))
    low, lowest = min(ratios)
    slower = [label for ratio, label in ratios if ratio < 1]
    closing = (f"The input pipeline outruns the model it feeds in every row ({low:.1f}x to {max(ratios)[0]:.1f}x); "
               f"the closest: {lowest}." if not slower else
               f"Slower than the model it feeds, so the bottleneck of training: {', '.join(slower)}.")
    head = ["pipeline", "images/s", "fed model (fwd+bwd)", "images/s", "pipeline / model"]
    return "\n".join([about, "", *table(head, rows), "", closing])


def data_tables(*paths):
    """docs/data.md's input-pipeline section from the summaries at `paths` (CPU, then CUDA)."""
    return "\n\n".join(data_block(p) for p in paths)


def positive_lists(summary, field, names, path, what, script):
    """{name: median} of summary[field], each of `names` a non-empty list of positive numbers there,
    else a UserError naming the first that is not and the command that writes the summary again."""
    lists = summary[field] if isinstance(summary[field], dict) else {}
    for name in names:
        values = lists.get(name)
        checked({f"{field}.{name}": (values if positive(values) else None, list)}, path, what, script)
    return {name: statistics.median(lists[name]) for name in names}


def medians_of(path, what, script, strings, integers, field, names):
    """A bench's summary at `path`, its `strings` and `integers` checked, and the medians of the
    lists summary[field][name] for `names`."""
    summary = read_json(path, f"{what} summary", keys=(*strings, *integers, field))
    checked({k: (summary[k], str) for k in strings} | {k: (summary[k], int) for k in integers}, path, what, script)
    return summary, positive_lists(summary, field, names, path, what, script)


def ending(summary):
    """A sentence's end: a full stop, or what a bench stopped before its last round leaves."""
    return ": the bench stopped before its last round." if summary.get("complete") is False else "."


def threading_sentence(path):
    """docs/metrics.md's sentence from bench/bench_threading.py's summary at `path`: numba's own
    pool (workqueue) against its OpenMP layer, as the ratio of their median times."""
    summary, median = medians_of(path, "threading", "bench/bench_threading.py", ("commit", "command"),
                                 ("cores", "rounds", "repeats", "queries", "database", "bits"), "times",
                                 ("workqueue", "omp"))
    return (f"`{summary['command']}` (commit `{commit_label(summary['commit'])}`, {summary['cores']} cores; one "
            f"process per layer in turns, {summary['rounds']} x {summary['repeats']} timed pairs of calls each, "
            f"tie-aware MAP and MAP@5000 of {summary['queries']:,} x {summary['database']:,} clustered "
            f"{summary['bits']}-bit codes) puts numba's own pool at {median['workqueue'] / median['omp']:.2f} times "
            f"the OpenMP layer's median time ({median['workqueue'] * 1e3:.0f} against {median['omp'] * 1e3:.0f} ms)"
            + ending(summary))


def distributed_sentence(path):
    """docs/distributed.md's sentence from bench/bench_distributed.py's summary at `path`: the
    training step's images/s in N processes against one, medians of the runs, as a ratio."""
    summary, median = medians_of(path, "distributed", "bench/bench_distributed.py",
                                 ("commit", "command", "device", "backend"), ("cores", "processes", "repeat"), "rates",
                                 ("one", "many"))
    return (f"On a {summary['cores']}-core {where_it_ran(summary)}, {summary['processes']} {summary['backend']} "
            f"processes against one process: {median['many']:,.0f} against {median['one']:,.0f} images/s, "
            f"{median['many'] / median['one']:.2f}x (medians of {summary['repeat']} runs each; "
            f"`{summary['command']}` at commit `{commit_label(summary['commit'])}`)" + ending(summary))


def mutation_block(path):
    """docs/testing.md's outcome of bench/mutation_check.py from its summary at `path`: one sentence
    (killed of run, the ids that survived or went stale, a stopped or partial run said so), then a
    table of the groups of mutations in the order the check ran them."""
    script = "bench/mutation_check.py"
    summary = read_json(path, "mutation-check summary", keys=("commit", "command", "cores", "chosen", "of",
                                                              "complete", "mutations"))
    checked({"commit": (summary["commit"], str), "command": (summary["command"], str),
             "cores": (summary["cores"], int), "chosen": (summary["chosen"], int), "of": (summary["of"], int),
             "complete": (summary["complete"], bool), "mutations": (summary["mutations"], list)},
            path, "mutation-check", script)
    groups = {}  # group -> {status: [ids]}, in the order run
    for m in summary["mutations"]:
        if not (isinstance(m, dict) and isinstance(m.get("id"), str) and isinstance(m.get("group"), str)
                and m.get("status") in MUTATION_STATUSES):
            raise UserError(f"mutation-check summary {path} has a mutation without an id, a group or a status of "
                            f"{', '.join(MUTATION_STATUSES)}; write it again with python {script}")
        groups.setdefault(m["group"], {s: [] for s in MUTATION_STATUSES})[m["status"]].append(m["id"])
    ids = {s: [i for g in groups.values() for i in g[s]] for s in MUTATION_STATUSES}
    tried = len(ids["killed"]) + len(ids["SURVIVED"])
    sentence = (f"`{summary['command']}` at commit `{commit_label(summary['commit'])}` ({summary['cores']} cores): "
                f"the tests killed {len(ids['killed'])} of the {tried} mutations run; survived: "
                f"{', '.join(ids['SURVIVED']) or 'none'}; stale: {', '.join(ids['stale']) or 'none'}.")
    if not summary["complete"]:
        sentence += f" The check stopped after {len(summary['mutations'])} of its {summary['chosen']} mutations."
    if summary["chosen"] < summary["of"]:
        sentence += f" A partial run: {summary['chosen']} of the {summary['of']} mutations were chosen."
    rows = [(group, str(sum(map(len, g.values()))), str(len(g["killed"])), ", ".join(g["SURVIVED"]) or "none",
             ", ".join(g["stale"]) or "none") for group, g in groups.items()]
    return "\n".join([sentence, "", *table(("what the mutations touch", "mutations", "killed", "survived", "stale"),
                                            rows)])
