"""Images per second of a MAH training step in one process and under torchrun, as a ratio.

The step is MAH-cascade's network (backbone, three heads of 4, 8 and 16 bits) forward,
backward and an SGD step on a global batch of random images, each process computing its
share and DDP averaging the gradients (utils.distributed, as the MAH scripts do); the loss
is the sum of squared outputs, since the step's cost is the network's. Each setting runs
in fresh processes, 3 warm-up steps then --steps timed ones; the settings take turns for
--repeat rounds, each going first in every other round (one process then N, N then one, ...),
and the medians are compared.
Every run's rate goes to bench/out/bench_distributed.json (bench_distributed_cuda.json on
CUDA), from which `python -m utils.report` writes the sentence of docs/distributed.md.

    python bench/bench_distributed.py                      # CPU: 1 and 2 processes (gloo)
    python bench/bench_distributed.py --device cuda        # GPUs: 1 and every GPU (NCCL)
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench_metrics import in_turn  # noqa: E402  (the order every bench times its sides in)
from utils import distributed, runs  # noqa: E402
from utils.models import MAHNet, build_backbone  # noqa: E402


def worker(args):
    """One process of a setting: prints the images per second of the timed steps (rank 0)."""
    device = distributed.setup("cpu" if args.device == "cpu" else "0")
    device = device or torch.device(args.device)
    torch.manual_seed(0)
    backbone, features = build_backbone(args.backbone)
    model = MAHNet(backbone, features, (4, 8, 16), cascade=True).to(device, memory_format=torch.channels_last)
    net = distributed.wrap(model)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    images = torch.randn(args.batch_size, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    share = images[distributed.shard(args.batch_size)].to(device).contiguous(memory_format=torch.channels_last)

    def step():
        loss = sum(out.pow(2).sum() for out in net(share))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    distributed.barrier()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    distributed.barrier()
    if distributed.is_main():
        print(f"images/s {args.steps * args.batch_size / (time.perf_counter() - start):.1f}")
    distributed.cleanup()


def run_setting(args, processes):
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--device", args.device, "--backbone",
               args.backbone, "--size", str(args.size), "--batch-size", str(args.batch_size),
               "--steps", str(args.steps)]
    if processes > 1:
        command[1:1] = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return float(out.stdout.split("images/s")[-1].split()[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL) (default: cpu)")
    parser.add_argument("--processes", type=int, default=None,
                        help="processes of the distributed setting (default: 2 on the CPU, every GPU on cuda)")
    parser.add_argument("--backbone", default="small", help="backbone of utils/models.py (default: small)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default: 32)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (default: 64)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (default: 20)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each setting, in turns (default: 5)")
    parser.add_argument("--out", help="the JSON summary (default: bench/out/bench_distributed.json, or "
                                      "bench_distributed_cuda.json with --device cuda, which the report reads)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    processes = args.processes or (torch.cuda.device_count() if args.device == "cuda" else 2)
    if processes < 2:
        sys.exit(f"error: the comparison needs 2 or more processes ({args.device}: {processes}); "
                 + ("it needs a machine with several GPUs" if args.device == "cuda" else "pass --processes 2 or more"))
    found = runs.provenance(args.device)
    print(f"{runs.described(found)}; MAH-cascade step, backbone {args.backbone} at {args.size} px, "
          f"global batch {args.batch_size}, {args.steps} timed steps per run, {args.repeat} runs per setting "
          "in turns")
    out = args.out or os.path.join(REPO, "bench", "out",
                                   f"bench_distributed{'_cuda' if args.device == 'cuda' else ''}.json")
    summary = {**found, "backend": "nccl" if args.device == "cuda" else "gloo", "processes": processes,
               "backbone": args.backbone, "size": args.size, "batch": args.batch_size, "steps": args.steps,
               "repeat": args.repeat}
    rates = {1: [], processes: []}
    for round_, order in in_turn(rates, args.repeat):  # one process first in half the rounds
        for n in order:
            rates[n].append(run_setting(args, n))
        runs.write_json(out, {**summary, "complete": round_ + 1 == args.repeat,
                              "rates": {"one": rates[1], "many": rates[processes]}})
    one, many = np.median(rates[1]), np.median(rates[processes])
    print(f"1 process: median {one:.1f} images/s (runs {', '.join(f'{r:.1f}' for r in rates[1])})")
    print(f"{processes} processes: median {many:.1f} images/s (runs {', '.join(f'{r:.1f}' for r in rates[processes])})")
    print(f"ratio {processes} processes / 1 process: {many / one:.2f}x")
    print(f"summary: {out}")


if __name__ == "__main__":
    main()
