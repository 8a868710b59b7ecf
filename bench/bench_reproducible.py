"""What is bit-reproducible: one MAH command run twice at each of two thread counts, each
run in a fresh folder and process. Prints, for each pair of runs, whether their log lines
(loss, objective, every metric) and final codes V are identical, and how far apart the
first objective and the final tie-aware MAP are.

    python bench/bench_reproducible.py                      # digits, a short cpu-small run
    python bench/bench_reproducible.py --threads 2 --runs 2 -- --preset cpu-pretrained --bits 12 \\
        --data-root ../shared/data/cifar10-jpeg.tar.gz     # any MAH options after --
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = ["--dataset", "digits", "--preset", "cpu-small", "--bits", "4", "--max-iter", "12", "--lr-steps", "8",
          "--v-hold", "6", "--num-samples", "1000", "--eval-every", "12"]


def run(folder, threads, options):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")}
    env["OMP_NUM_THREADS"] = str(threads)
    subprocess.run([sys.executable, "cascade_CIFAR-10.py", "--gpu", "cpu", *options, "--output-dir", folder],
                   cwd=REPO, env=env, check=True, capture_output=True, text=True)
    log = [json.loads(line) for line in open(os.path.join(folder, "log.jsonl"))]
    results = [json.load(open(os.path.join(folder, "results", name)))
               for name in sorted(os.listdir(os.path.join(folder, "results")))]
    V = torch.load(os.path.join(folder, "checkpoint.pt"), weights_only=True)["V"]
    for record in log:
        record.pop("seconds")  # wall time is not a result
    return dict(threads=threads, log=log, V=V, map=results[-1]["metrics"]["map_tie_aware"],
                recorded=results[-1]["threads"])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="2,1", help="thread counts to compare (default: 2,1)")
    p.add_argument("--runs", type=int, default=2, help="runs per thread count (default: 2)")
    p.add_argument("options", nargs="*", help="options of cascade_CIFAR-10.py (default: a short digits run)")
    args = p.parse_args()
    options = args.options or DIGITS
    print(f"cascade_CIFAR-10.py {' '.join(options)}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in map(int, args.threads.split(",")):
            for k in range(args.runs):
                runs.append(run(os.path.join(tmp, f"t{threads}-{k}"), threads, options))
                r = runs[-1]
                print(f"run {len(runs)}: {threads} thread(s) (recorded: torch {r['recorded']['torch']}, numba "
                      f"{r['recorded']['numba']}), tie-aware MAP {r['map']:.4f}", flush=True)
    print("\nruns  threads  identical log and V  |objective 0 difference|  |MAP difference|")
    for (i, a), (j, b) in itertools.combinations(enumerate(runs, 1), 2):
        same = a["log"] == b["log"] and all(torch.equal(x, y) for x, y in zip(a["V"], b["V"]))
        d0 = abs(a["log"][0]["objective"][0] - b["log"][0]["objective"][0])
        print(f"{i},{j}   {a['threads']},{b['threads']}      {'yes' if same else 'no':<20} {d0:<24.3g} "
              f"{abs(a['map'] - b['map']):.4f}")


if __name__ == "__main__":
    main()
