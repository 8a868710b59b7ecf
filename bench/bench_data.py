"""Is the input pipeline ever the bottleneck? Images/s of each data path against the
forward+backward throughput of the models it feeds, for the same batch size.

- fast path: utils.data.images.ArrayImages, 32x32 uint8 images in memory (on the device),
  batches sliced, augmented, resized and normalised as tensor ops;
- DataLoader path: utils.data.images.FileImages over image files (PIL decode, Resize(256),
  CenterCrop(224)) with worker processes, as NUS-WIDE / FLICKR / COCO use;
- models: ResNet-50 at 224 (paper preset) and ResNet-18 at 32 (a small backbone),
  forward + backward + SGD step, random weights.

    python bench/bench_data.py                  # CPU
    python bench/bench_data.py --device cuda    # fast path and models on the GPU

Each of the five (three pipelines, two models) is measured --rounds times, interleaved, the
order turning each round, and the table gives the medians; a ratio, pipeline over the model
it feeds, above 1 means the pipeline is faster. Images come from
../shared/data/cifar10-jpeg.tar.gz when present (decoded once and cached), else from
scikit-learn's digits. The summary, bench/out/bench_data.json (bench_data_cuda.json on
CUDA), is what `python -m utils.report` writes docs/data.md's table from.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench_metrics import in_turn  # noqa: E402  (the order every bench times its sides in)
from utils import runs  # noqa: E402
from utils.data.cifar10 import load_cifar10  # noqa: E402
from utils.data.loader import load_digits  # noqa: E402
from utils.data.datasets import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from utils.data.images import ArrayImages, FileImages, Normalise, file_transform  # noqa: E402
from utils.data.listfiles import ImageList  # noqa: E402

SHARED_CIFAR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "shared", "data", "cifar10-jpeg.tar.gz")


# what the report's table pairs: each pipeline beside the model it feeds (the names of the summary's rates)
PAIRS = (("fast_32", "resnet18_32"), ("fast_224", "resnet50_224"), ("files_224", "resnet50_224"))
LABELS = {"fast_32": "fast path 32x32, crop+flip", "fast_224": "fast path 32 -> 256 -> crop 224",
          "files_224": "DataLoader, JPEG files -> 224", "resnet18_32": "ResNet-18 at 32",
          "resnet50_224": "ResNet-50 at 224"}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(step, images_per_step, device, seconds):
    """Images per second of `step()`, run for about `seconds` after one warm-up step."""
    step()
    sync(device)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or steps < 2:
        step()
        steps += 1
    sync(device)
    return images_per_step * steps / (time.perf_counter() - start)


def model_step(arch, size, batch, device):
    """One forward + backward + SGD step of a torchvision model with a 16-bit code head."""
    model = getattr(torchvision.models, arch)(num_classes=16).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size, device=device)

    def step():
        opt.zero_grad()
        model(x).tanh().pow(2).mean().backward()
        opt.step()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64, as MAH)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count()),
                        help="DataLoader worker processes (default: min(8, CPUs))")
    parser.add_argument("--files", type=int, default=1024, help="image files written for the DataLoader path "
                        "(default: 1024)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement (default: 5)")
    parser.add_argument("--digits", action="store_true", help="scikit-learn's digits even where the shared CIFAR-10 "
                                                             "is, for a quick check (default: off)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each, interleaved (default: 3)")
    parser.add_argument("--out", help="the JSON summary (default: bench/out/bench_data.json, or bench_data_cuda.json "
                                      "with --device cuda, which the report reads)")
    args = parser.parse_args()
    device, b = torch.device(args.device), args.batch_size
    if os.path.exists(SHARED_CIFAR) and not args.digits:
        pixels, source = load_cifar10(SHARED_CIFAR).images, "CIFAR-10 (shared archive)"
    else:
        pixels, source = load_digits()[0], "digits"
    found = runs.provenance(device)
    print(f"{runs.described(found)}, batch {b}, images from {source}")

    gen = torch.Generator().manual_seed(0)
    index = lambda: torch.randint(0, len(pixels), (b,), generator=gen)  # noqa: E731
    small = ArrayImages(pixels, IMAGENET_MEAN, IMAGENET_STD, device, augment=True)
    paper = ArrayImages(pixels, IMAGENET_MEAN, IMAGENET_STD, device, resize=256, crop=224)
    workers = f"{args.workers} worker{'s' if args.workers != 1 else ''}"
    out = args.out or os.path.join(REPO, "bench", "out", f"bench_data{'_cuda' if device.type == 'cuda' else ''}.json")
    summary = {**found, "batch": b, "workers": args.workers, "seconds": args.seconds, "rounds": args.rounds,
               "images": source, "complete": False,
               "pairs": [{"pipeline": p, "model": m} for p, m in PAIRS],
               "labels": {**LABELS, "files_224": f"{LABELS['files_224']}, {workers}"}}

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.files):
            paths.append(os.path.join(tmp, f"{i}.jpg"))
            Image.fromarray(pixels[i % len(pixels)]).save(paths[-1])
        listed = ImageList(paths, np.zeros((len(paths), 1), np.uint8), [("bench", i) for i in range(len(paths))])
        loader = torch.utils.data.DataLoader(FileImages(listed, file_transform()),
                                             batch_size=b, shuffle=True, num_workers=args.workers,
                                             persistent_workers=args.workers > 0, drop_last=True)
        batches = iter(())
        normalise = Normalise(IMAGENET_MEAN, IMAGENET_STD, device)

        def next_batch():
            nonlocal batches
            try:
                x, _ = next(batches)
            except StopIteration:
                batches = iter(loader)
                x, _ = next(batches)
            normalise(x)

        steps = {"fast_32": lambda: small.batch(index(), train=True, generator=gen),
                 "fast_224": lambda: paper.batch(index()), "files_224": next_batch,
                 "resnet50_224": model_step("resnet50", 224, b, device),
                 "resnet18_32": model_step("resnet18", 32, b, device)}
        rates = {name: [] for name in steps}
        for round_, order in in_turn(steps, args.rounds):
            for name in order:
                rates[name].append(rate(steps[name], b, device, args.seconds))
            summary.update(rates=rates, complete=round_ + 1 == args.rounds)
            runs.write_json(out, summary)  # after every round, so a stopped bench keeps what it measured

    median = {name: statistics.median(r) for name, r in rates.items()}
    print(f"\n{'pipeline':<44} {'images/s':>10} {'model (fwd+bwd)':>20} {'images/s':>10} {'ratio':>7}"
          f"   (medians of {args.rounds} rounds)")
    for pipe, model in PAIRS:
        print(f"{summary['labels'][pipe]:<44} {median[pipe]:>10.0f} {LABELS[model]:>20} {median[model]:>10.0f} "
              f"{median[pipe] / median[model]:>6.1f}x")
    print(f"summary: {out}")


if __name__ == "__main__":
    main()
