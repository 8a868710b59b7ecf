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

Images come from ../shared/data/cifar10-jpeg.tar.gz when present (decoded once and
cached), else from scikit-learn's digits. A ratio above 1 means the pipeline is faster
than the model it feeds.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.data.cifar10 import load_cifar10  # noqa: E402
from utils.data.loader import load_digits  # noqa: E402
from utils.data.datasets import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from utils.data.images import ArrayImages, FileImages, Normalise, file_transform  # noqa: E402
from utils.data.listfiles import ImageList  # noqa: E402

SHARED_CIFAR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "shared", "data", "cifar10-jpeg.tar.gz")


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


def model_rate(arch, size, batch, device, seconds):
    model = getattr(torchvision.models, arch)(num_classes=16).to(device)  # a 16-bit code head
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size, device=device)

    def step():
        opt.zero_grad()
        model(x).tanh().pow(2).mean().backward()
        opt.step()

    return rate(step, batch, device, seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64, as MAH)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count()),
                        help="DataLoader worker processes (default: min(8, CPUs))")
    parser.add_argument("--files", type=int, default=1024, help="image files written for the DataLoader path "
                        "(default: 1024)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement (default: 5)")
    args = parser.parse_args()
    device, b = torch.device(args.device), args.batch_size
    if os.path.exists(SHARED_CIFAR):
        pixels, source = load_cifar10(SHARED_CIFAR).images, "CIFAR-10 (shared archive)"
    else:
        pixels, source = load_digits()[0], "digits"
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
          + f", batch {b}, images from {source}")

    gen = torch.Generator().manual_seed(0)
    index = lambda: torch.randint(0, len(pixels), (b,), generator=gen)  # noqa: E731
    small = ArrayImages(pixels, IMAGENET_MEAN, IMAGENET_STD, device, augment=True)
    paper = ArrayImages(pixels, IMAGENET_MEAN, IMAGENET_STD, device, resize=256, crop=224)
    fast_32 = rate(lambda: small.batch(index(), train=True, generator=gen), b, device, args.seconds)
    fast_224 = rate(lambda: paper.batch(index()), b, device, args.seconds)

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

        files_224 = rate(next_batch, b, device, args.seconds)

    resnet50 = model_rate("resnet50", 224, b, device, args.seconds)
    resnet18 = model_rate("resnet18", 32, b, device, args.seconds)
    print(f"\n{'pipeline':<44} {'images/s':>10} {'model (fwd+bwd)':>20} {'images/s':>10} {'ratio':>7}")
    rows = [("fast path 32x32, crop+flip", fast_32, "ResNet-18 at 32", resnet18),
            ("fast path 32 -> 256 -> crop 224", fast_224, "ResNet-50 at 224", resnet50),
            (f"DataLoader JPEG files -> 224, {args.workers} workers", files_224, "ResNet-50 at 224", resnet50)]
    for name, pipe, model, speed in rows:
        print(f"{name:<44} {pipe:>10.0f} {model:>20} {speed:>10.0f} {pipe / speed:>6.1f}x")


if __name__ == "__main__":
    main()
