"""Time utils.metrics against the classic per-query loop, on the same random data.

The classic loop is the evaluation of the 2017-2019 hashing repositories (MAH,
ADSH, DPSH, DeepHash-pytorch), written afresh here: for each query, relevance
from the label inner product, Hamming distance from the code inner product,
numpy's default argsort over the whole database, AP from the sorted relevance.
Its tie-aware twin replaces the last step by the closed-form tie-aware AP of
the sorted distances. Data: class prototypes with bit noise (realistic label
structure: the codes of a class cluster, so distances tie heavily).

    python bench/bench_metrics.py                 # CPU, the sizes of the issue
    python bench/bench_metrics.py --device cuda   # library on the GPU
    python bench/bench_metrics.py --small         # a quick look (smaller sizes)
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils import metrics  # noqa: E402


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
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
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


def best_of(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times), result


def to_device(arrays, device):
    return [torch.from_numpy(a).to(device) for a in arrays] if device != "cpu" else list(arrays)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="where the library computes: cpu or cuda (default: cpu)")
    parser.add_argument("--small", action="store_true", help="a tenth of the sizes, for a quick look")
    parser.add_argument("--seed", type=int, default=0, help="data seed (default: 0)")
    parser.add_argument("--repeat", type=int, default=5, help="library timings: best of this many (default: 5)")
    args = parser.parse_args()
    scale = 10 if args.small else 1
    print(f"torch {torch.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads, library on {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))

    n_query, n_db = 1000 // scale, 59000 // scale
    print(f"\nFull-ranking MAP, {n_query} queries x {n_db} database, 10 classes (CIFAR-10 scale)")
    print(f"{'bits':>4} {'ties':>8} {'classic s':>10} {'library s':>10} {'speed-up':>9}  "
          f"{'classic MAP':>11} {'library MAP':>11}")
    for bits in (4, 8, 12, 32):
        q, db, ql, dl = single_label_data(np.random.default_rng([args.seed, bits]), n_query, n_db, bits)
        qh, dh = one_hot(ql, 10), one_hot(dl, 10)
        inputs = to_device((q, db, ql, dl), args.device)
        for ties, classic in (("index", classic_map), ("expected", classic_tie_aware_map)):
            start = time.perf_counter()
            want = classic(q, db, qh, dh)
            classic_s = time.perf_counter() - start
            lib_s, got = best_of(lambda: metrics.mean_average_precision(*inputs, ties=ties), args.repeat)
            print(f"{bits:>4} {ties:>8} {classic_s:>10.3f} {lib_s:>10.4f} {classic_s / lib_s:>8.1f}x  "
                  f"{want:>11.4f} {got:>11.4f}")
    print("(classic 'index' MAP differs where numpy's unstable argsort orders ties differently)")

    n_query, n_db = 2100 // scale, 193734 // scale
    print(f"\nmAP@5000, {n_query} queries x {n_db} database, 21-label multi-hot (NUS-WIDE scale)")
    print(f"{'bits':>4} {'classic s':>10} {'MB':>6} {'library s':>10} {'MB':>6} {'speed-up':>9}  "
          f"{'classic':>7} {'library':>7}")
    for bits in (12, 48):
        q, db, ql, dl = multi_label_data(np.random.default_rng([args.seed, bits]), n_query, n_db, bits)
        qf, df = ql.astype(np.float32), dl.astype(np.float32)
        start = time.perf_counter()
        want = classic_map(q, db, qf, df, topk=5000)
        classic_s = time.perf_counter() - start
        inputs = to_device((q, db, ql, dl), args.device)
        lib_s, got = best_of(lambda: metrics.mean_average_precision(*inputs, topk=5000), args.repeat)
        classic_mb = peak_memory_mb(_nus_peak, "classic", n_query, n_db, bits, args.seed)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            metrics.mean_average_precision(*inputs, topk=5000)
            lib_mb = (torch.cuda.max_memory_allocated() - before) / 2 ** 20
        else:
            lib_mb = peak_memory_mb(_nus_peak, "library", n_query, n_db, bits, args.seed)
        print(f"{bits:>4} {classic_s:>10.3f} {classic_mb:>6.0f} {lib_s:>10.3f} {lib_mb:>6.0f} "
              f"{classic_s / lib_s:>8.1f}x  {want:>7.4f} {got:>7.4f}")
    print("(MB: peak memory the call adds, measured in a fresh process: resident memory for the classic loop "
          "and the CPU library, GPU memory for the library on cuda)")

if __name__ == "__main__":
    main()
