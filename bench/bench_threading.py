"""The compiled metric passes on numba's own thread pool (workqueue, what utils.hamming_kernels
chooses) against its OpenMP layer (which resets torch's thread count): tie-aware MAP and
MAP@5000 of Q queries against N database codes. The layer is fixed per process, so each
round starts one process per layer, in turns (each layer first in every other round), each
timing the same calls; the bench prints the median of each layer and their ratio, and
writes every timed call to bench/out/bench_threading.json, from which `python -m
utils.report` writes the sentence of docs/metrics.md.

    python bench/bench_threading.py --rounds 5
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench_metrics import in_turn  # noqa: E402  (the order every bench times its sides in)
from utils import runs  # noqa: E402

CHILD = """
import gc, json, sys, time
sys.path.insert(0, {repo!r})
import numpy as np, torch
from utils import metrics
rng = np.random.default_rng(0)
Q, N, K, C = {queries}, {database}, {bits}, 10
ql, dl = rng.integers(0, C, Q), rng.integers(0, C, N)
protos = np.sign(rng.standard_normal((C, K)))
flip = lambda labels: protos[labels] * np.where(rng.random((len(labels), K)) < 0.15, -1, 1)
q, d = torch.tensor(flip(ql), dtype=torch.float32), torch.tensor(flip(dl), dtype=torch.float32)
calls = [lambda: metrics.mean_average_precision(q, d, ql, dl, ties="expected"),
         lambda: metrics.mean_average_precision(q, d, ql, dl, topk=5000)]
for call in calls:
    call()  # compiled and warm
times = []
gc.disable()
for _ in range({repeats}):
    tic = time.perf_counter()
    for call in calls:
        call()
    times.append(time.perf_counter() - tic)
import numba
print(json.dumps(dict(layer=numba.threading_layer(), threads=torch.get_num_threads(), times=times)))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="processes per layer (default: 5)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per process (default: 5)")
    p.add_argument("--queries", type=int, default=1000, help="Q (default: 1000)")
    p.add_argument("--database", type=int, default=50000, help="N (default: 50000)")
    p.add_argument("--bits", type=int, default=12, help="K (default: 12)")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "out", "bench_threading.json"),
                   help="the JSON summary (default: bench/out/bench_threading.json, which the report reads)")
    args = p.parse_args()
    summary = {**runs.provenance(),
               **{k: getattr(args, k) for k in ("rounds", "repeats", "queries", "database", "bits")},
               "complete": False, "threads": {}}
    code = CHILD.format(repo=REPO, **{k: getattr(args, k) for k in ("queries", "database", "bits", "repeats")})
    times = {"workqueue": [], "omp": []}
    for r, order in in_turn(times, args.rounds):
        for layer in order:
            env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
            done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            out = json.loads(done.stdout.strip().splitlines()[-1])
            times[layer] += out["times"]
            summary["threads"][layer] = out["threads"]
            print(f"round {r + 1}: {out['layer']:<9} ({out['threads']} torch threads after the calls) median "
                  f"{statistics.median(out['times']) * 1e3:.1f} ms", flush=True)
        runs.write_json(args.out, {**summary, "times": times, "complete": r + 1 == args.rounds})
    a, b = (statistics.median(times[k]) for k in ("workqueue", "omp"))
    print(f"\nQ={args.queries} N={args.database} K={args.bits}, {args.rounds} x {args.repeats} calls each: "
          f"workqueue / omp median time = {a / b:.2f}")
    print(f"summary: {args.out}")


if __name__ == "__main__":
    main()
