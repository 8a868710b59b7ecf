"""Time utils.metrics against the classic per-query loop, fairly, on the same random data.

The classic loop is the evaluation of the 2017-2019 hashing repositories (MAH,
ADSH, DPSH, DeepHash-pytorch), written afresh here: for each query, relevance
from the label inner product, Hamming distance from the code inner product,
numpy's default argsort over the whole database, AP from the sorted relevance.
Its tie-aware twin replaces the last step by the closed-form tie-aware AP of
the sorted distances. Data: class prototypes with bit noise (realistic label
structure: the codes of a class cluster, so distances tie heavily).

How it times: in one process, on the same data, each side is called once
untimed (compilation, caches), then --repeat times each, interleaved (classic,
library, classic, library, ...; with a third side the order turns each round),
the garbage collector held off during each call as timeit does. It prints the
median and the best of each side, the ratio of medians and of bests, and the
load of the machine while the case ran (CPU time of other processes per second,
in cores, from /proc/stat). With --baseline a third side, another version of
utils/metrics.py, is timed too, and library-vs-baseline ratios are printed: a file, or
a git revision of this repository whose utils/metrics.py is taken (--baseline 92e2c36).

It writes every timed call, the MAP values and the load to a JSON summary, rewritten after
each case so a stopped bench keeps what it measured: bench/out/bench_metrics.json on the
CPU, bench/out/bench_metrics_cuda.json on CUDA, which `python -m utils.report` turns into
the tables of docs/metrics.md (--small writes to the temporary folder instead, so that a
quick look never replaces the figures).

    python bench/bench_metrics.py                 # CPU, at CIFAR-10 sizes (1,000 queries x 59,000 codes)
    python bench/bench_metrics.py --device cuda   # library on the GPU
    python bench/bench_metrics.py --small         # a quick look (smaller sizes)
"""
import argparse
import gc
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from utils import metrics, runs  # noqa: E402


# -------------------------------------------------------------------------- data

def single_label_data(rng, n_query, n_db, bits, classes=10, flip=0.15):
    protos = rng.choice([-1, 1], size=(classes, bits))

    def draw(n):
        labels = rng.integers(0, classes, n)
        codes = protos[labels] * np.where(rng.random((n, bits)) < flip, -1, 1)
        return codes.astype(np.float32), labels

    (q, ql), (db, dl) = draw(n_query), draw(n_db)
    return q, db, ql, dl


def multi_label_data(rng, n_query, n_db, bits, classes=21, noise=0.8):
    protos = rng.standard_normal((classes, bits))
    popularity = 1.0 / np.arange(1, classes + 1)  # a few frequent concepts, a long tail

    def draw(n):
        labels = np.zeros((n, classes), np.int64)
        per_item = rng.integers(1, 4, n)
        for i, m in enumerate(per_item):  # data generation only, not timed
            labels[i, rng.choice(classes, m, replace=False, p=popularity / popularity.sum())] = 1
        codes = np.sign(labels @ protos + noise * rng.standard_normal((n, bits)))
        codes[codes == 0] = 1
        return codes.astype(np.float32), labels

    (q, ql), (db, dl) = draw(n_query), draw(n_db)
    return q, db, ql, dl


def one_hot(labels, classes):
    return np.eye(classes, dtype=np.float32)[labels] if labels.ndim == 1 else labels.astype(np.float32)


# ---------------------------------------------------------------- classic loops

def classic_map(q, db, ql, dl, topk=None):
    bits, total = q.shape[1], 0.0
    for i in range(len(q)):
        rel = (dl @ ql[i] > 0).astype(np.float32)
        dist = 0.5 * (bits - db @ q[i])
        rel = rel[np.argsort(dist)][:topk]
        hits = np.flatnonzero(rel) + 1.0
        if hits.size:
            total += np.mean(np.arange(1, hits.size + 1) / hits)
    return total / len(q)


def classic_tie_aware_map(q, db, ql, dl):
    bits, total = q.shape[1], 0.0
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, len(db) + 1))])
    for i in range(len(q)):
        rel = (dl @ ql[i] > 0).astype(np.float32)
        dist = 0.5 * (bits - db @ q[i])
        order = np.argsort(dist)
        dist, rel = dist[order], rel[order]
        _, start, n = np.unique(dist, return_index=True, return_counts=True)
        r = np.add.reduceat(rel, start)
        if r.sum() == 0:
            continue
        a, b = start, np.cumsum(r) - r
        beta = np.where(n > 1, (r - 1) / np.maximum(n - 1, 1), 0.0)
        per_bucket = r / n * (n * beta + (b + 1 - beta - beta * a) * (harmonic[a + n] - harmonic[a]))
        total += per_bucket.sum() / r.sum()
    return total / len(q)


# ------------------------------------------------------------------ measurement

def peak_memory_mb(job, *args):
    """Peak resident memory (MB) that `job(*args)` adds, measured in a fresh process.

    A fresh interpreter, with glibc's mmap threshold fixed at 64 KiB so that every
    large buffer is mapped and unmapped: otherwise memory freed earlier in this
    process would be reused unseen and the peak under-counted.
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    code = f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); " \
           f"import bench_metrics as b; print(b.{job.__name__}(*{args!r}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:  # e.g. a kernel without /proc/self/clear_refs: no figure rather than no bench
        print(f"(peak memory not measured: {out.stderr.strip().splitlines()[-1]})")
        return float("nan")
    return float(out.stdout.split()[-1])


def _status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _nus_peak(which, n_query, n_db, bits, seed):
    """Child side of peak_memory_mb for the NUS-scale mAP@5000 call."""
    q, db, ql, dl = multi_label_data(np.random.default_rng([seed, bits]), n_query, n_db, bits)
    qf, df = ql.astype(np.float32), dl.astype(np.float32)
    call = {"classic": lambda n: classic_map(q[:n], db, qf[:n], df, topk=5000),
            "library": lambda n: metrics.mean_average_precision(q[:n], db, ql[:n], dl, topk=5000)}[which]
    call(2)  # warm-up: libraries' code pages and one-off buffers are not the call's memory
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS (Linux)
        f.write("5")
    before = _status_kb("VmRSS")
    call(n_query)
    return (_status_kb("VmHWM") - before) / 1024


class OtherLoad:
    """CPU time used by other processes while a case runs, in cores (Linux /proc/stat)."""

    def __enter__(self):
        self.start = (self._busy(), time.process_time(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        busy, own, wall = self._busy(), time.process_time(), time.perf_counter()
        ticks = os.sysconf("SC_CLK_TCK")
        self.cores = max(0.0, (busy - self.start[0]) / ticks - (own - self.start[1])) / (wall - self.start[2])

    @staticmethod
    def _busy():
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
        return user + nice + system + irq + softirq + steal


def timed(fn):
    """Seconds of one call and its result; the garbage collector is held off while it runs, as timeit does."""
    gc.collect()
    gc.disable()
    try:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start, result
    finally:
        gc.enable()


def in_turn(names, rounds):
    """(round, the order of `names` in it) for each round: the order turns by one each round, so
    that over len(names) rounds each side holds each place once, and no side is always the one
    that runs first or right after the long classic loop (when a GPU or an idle core is cold)."""
    names = list(names)
    for round_ in range(rounds):
        k = round_ % len(names)
        yield round_, names[k:] + names[:k]


def interleaved(sides, repeat):
    """Time each of `sides` (name -> callable) `repeat` times, in turn (in_turn), after one untimed
    call each. Returns name -> (sorted times, result of the last call), and the other processes' load.
    """
    for fn in sides.values():
        fn()
    times = {name: [] for name in sides}
    results = {}
    with OtherLoad() as load:
        for _, order in in_turn(sides, repeat):
            for name in order:
                seconds, results[name] = timed(sides[name])
                times[name].append(seconds)
    return {name: (sorted(times[name]), results[name]) for name in sides}, load.cores


def summary(out, name):
    times = out[name][0]
    return float(np.median(times)), times[0]


def to_device(arrays, device):
    return [torch.from_numpy(a).to(device) for a in arrays] if device != "cpu" else list(arrays)


def load_baseline(baseline):
    """The module of --baseline: a file, else utils/metrics.py at the git revision it names,
    else an error naming both readings."""
    if os.path.isfile(baseline):
        with open(baseline, "rb") as f:
            source = f.read()
    else:
        shown = subprocess.run(["git", "show", f"{baseline}:utils/metrics.py"], cwd=REPO, capture_output=True)
        if shown.returncode:
            sys.exit(f"error: --baseline {baseline} is neither a file nor a git revision with utils/metrics.py; "
                     "give a copy of utils/metrics.py or a commit of this repository")
        source = shown.stdout
    with tempfile.TemporaryDirectory() as folder:  # the module is in memory once executed
        path = os.path.join(folder, "baseline_metrics.py")
        with open(path, "wb") as f:
            f.write(source)
        spec = importlib.util.spec_from_file_location("baseline_metrics", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def print_case(label, out, load, baseline, extra=""):
    c_med, c_best = summary(out, "classic")
    l_med, l_best = summary(out, "library")
    line = (f"{label:<22} {c_med:>9.4f} {c_best:>9.4f} {l_med:>9.4f} {l_best:>9.4f} "
            f"{c_med / l_med:>8.1f}x {c_best / l_best:>8.1f}x")
    if baseline:
        b_med, b_best = summary(out, "baseline")
        line += f" {b_med:>9.4f} {b_med / l_med:>8.2f}x {b_best / l_best:>8.2f}x"
    print(f"{line} {load:>5.2f}  {extra}", flush=True)


def header(first, baseline):
    cols = (f"{first:<22} {'classic':>9} {'':>9} {'library':>9} {'':>9} {'ratio of':>9} {'ratio of':>9}"
            + (f" {'baseline':>9} {'lib. vs':>9} {'lib. vs':>9}" if baseline else "") + f" {'other':>5}")
    sub = (f"{'':<22} {'median s':>9} {'best s':>9} {'median s':>9} {'best s':>9} {'medians':>9} {'bests':>9}"
           + (f" {'median s':>9} {'baseline':>9} {'baseline':>9}" if baseline else "") + f" {'load':>5}")
    print(cols)
    print(sub)


def version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def case_record(what, bits, ties, n_query, n_db, out, load, **extra):
    """One case of the summary: every timed call of each side (sorted), its last MAP, the load."""
    return {"case": what, "bits": bits, "ties": ties, "queries": n_query, "database": n_db,
            "seconds": {name: times for name, (times, _) in out.items()},
            "map": {name: float(value) for name, (_, value) in out.items()}, "other_load": load, **extra}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="where the library computes: cpu or cuda (default: cpu)")
    parser.add_argument("--small", action="store_true", help="a tenth of the sizes, for a quick look")
    parser.add_argument("--scale", type=int, default=None, help="sizes divided by this (default: 1, or 10 with "
                                                                 "--small); above 1 the summary is no figure")
    parser.add_argument("--seed", type=int, default=0, help="data seed (default: 0)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls of each side, interleaved (default: 5)")
    parser.add_argument("--baseline", default=None,
                        help="another version of utils/metrics.py to time beside this one: a file, or a git "
                             "revision whose utils/metrics.py is taken (default: none)")
    parser.add_argument("--out", help="the JSON summary (default: bench/out/bench_metrics.json, or "
                                      "bench_metrics_cuda.json with --device cuda, which the report reads; with "
                                      "--small, bench_metrics_small.json in the temporary folder)")
    args = parser.parse_args()
    scale = args.scale or (10 if args.small else 1)
    if scale < 1:
        parser.error("--scale must be at least 1")
    args.small = scale > 1
    out_path = args.out or (os.path.join(tempfile.gettempdir(), "bench_metrics_small.json") if args.small else
                            os.path.join(REPO, "bench", "out", "bench_metrics_cuda.json" if args.device == "cuda"
                                         else "bench_metrics.json"))
    base = load_baseline(args.baseline) if args.baseline else None
    found = runs.provenance(args.device)
    print(f"{runs.described(found)}, numpy {np.__version__}, {torch.get_num_threads()} torch threads"
          f"; each side: 1 untimed call, then {args.repeat} timed calls interleaved, the order turning each round"
          + (f"; baseline {args.baseline}" if base else ""))
    print(f"load average (1 min) at the start: {os.getloadavg()[0]:.2f}")
    start = time.perf_counter()
    summary = {**found, "torch_threads": torch.get_num_threads(), "numpy": np.__version__, "numba": version("numba"),
               "repeat": args.repeat, "seed": args.seed, "small": args.small, "scale": scale, "baseline": args.baseline,
               "load_average_start": os.getloadavg()[0], "complete": False, "cases": []}

    def write(case, complete=False):
        """The summary so far: rewritten after every case, so a stopped bench keeps its cases."""
        if case is not None:
            summary["cases"].append(case)
        summary.update(complete=complete, seconds=time.perf_counter() - start,
                       load_average_end=os.getloadavg()[0])
        runs.write_json(out_path, summary)

    n_query, n_db = 1000 // scale, 59000 // scale
    print(f"\nFull-ranking MAP, {n_query} queries x {n_db} database, 10 classes (CIFAR-10 scale)")
    header("bits, ties", base)
    for bits in (4, 8, 12, 32):
        q, db, ql, dl = single_label_data(np.random.default_rng([args.seed, bits]), n_query, n_db, bits)
        qh, dh = one_hot(ql, 10), one_hot(dl, 10)
        inputs = to_device((q, db, ql, dl), args.device)
        for ties, classic in (("index", classic_map), ("expected", classic_tie_aware_map)):
            sides = {"classic": lambda: classic(q, db, qh, dh),
                     "library": lambda: metrics.mean_average_precision(*inputs, ties=ties)}
            if base:
                sides["baseline"] = lambda: base.mean_average_precision(*inputs, ties=ties)
            out, load = interleaved(sides, args.repeat)
            print_case(f"{bits:>2} bits, {ties}", out, load, base,
                       f"MAP classic {out['classic'][1]:.4f} library {out['library'][1]:.4f}")
            write(case_record("full ranking", bits, ties, n_query, n_db, out, load))
    print("(classic 'index' MAP differs where numpy's unstable argsort orders ties differently)")

    n_query, n_db = 2100 // scale, 193734 // scale
    print(f"\nmAP@5000, {n_query} queries x {n_db} database, 21-label multi-hot (NUS-WIDE scale)")
    header("bits", base)
    for bits in (12, 48):
        q, db, ql, dl = multi_label_data(np.random.default_rng([args.seed, bits]), n_query, n_db, bits)
        qf, df = ql.astype(np.float32), dl.astype(np.float32)
        inputs = to_device((q, db, ql, dl), args.device)
        sides = {"classic": lambda: classic_map(q, db, qf, df, topk=5000),
                 "library": lambda: metrics.mean_average_precision(*inputs, topk=5000)}
        if base:
            sides["baseline"] = lambda: base.mean_average_precision(*inputs, topk=5000)
        out, load = interleaved(sides, args.repeat)
        classic_mb = peak_memory_mb(_nus_peak, "classic", n_query, n_db, bits, args.seed)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            metrics.mean_average_precision(*inputs, topk=5000)
            lib_mb = (torch.cuda.max_memory_allocated() - before) / 2 ** 20
        else:
            lib_mb = peak_memory_mb(_nus_peak, "library", n_query, n_db, bits, args.seed)
        print_case(f"{bits:>2} bits", out, load, base,
                   f"mAP classic {out['classic'][1]:.4f} library {out['library'][1]:.4f}; "
                   f"peak MB classic {classic_mb:.0f} library {lib_mb:.0f}")
        peak = {side: None if np.isnan(mb) else mb for side, mb in (("classic", classic_mb), ("library", lib_mb))}
        write(case_record("mAP@5000", bits, None, n_query, n_db, out, load, peak_mb=peak))
    print("(peak MB: memory the call adds, measured in a fresh process: resident memory for the classic loop "
          "and the CPU library, GPU memory for the library on cuda)")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}; 'other load': CPU time of other "
          "processes per second of the case, in cores")
    write(None, complete=True)
    print(f"summary: {out_path}")


if __name__ == "__main__":
    main()
