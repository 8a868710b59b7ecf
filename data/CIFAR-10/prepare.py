"""Write CIFAR-10 as image files plus MAH-style split lists (what the original SaveFig.m did).

From any form utils.cifar10 reads (official python / Matlab / binary version, or an
image tree, as a folder or archive), for one protocol and seed:

    python data/CIFAR-10/prepare.py --data-root ~/datasets/cifar-10-python.tar.gz --out ~/datasets/cifar10-dpsh

writes into --out
    database_img/NNNNN.png, test_img/NNNNN.png, train_img/NNNNN.png   (NNNNN = canonical index)
    database_img.txt / database_label.txt, test_img.txt / test_label.txt,
    train_img.txt / train_label.txt                                  (MAH list format)
    prepared.json                                                    (protocol, seed, sizes)
Pointing `--data-root` of any script at --out then loads this exact split.
"""
import argparse
import json
import os
import sys

from PIL import Image

# the script lives in data/CIFAR-10/; make the repository's utils importable
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from utils.data.cifar10 import load_cifar10  # noqa: E402
from utils.data.datasets import get_dataset  # noqa: E402
from utils.errors import run  # noqa: E402
from utils.data.listfiles import write_mah_lists, write_text_atomic  # noqa: E402
from utils.data.splits import make_split  # noqa: E402

PARTS = {"database": "database", "query": "test", "train": "train"}  # split part -> MAH list name


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True,
                   help="CIFAR-10 in any supported form, folder or archive (required)")
    p.add_argument("--out", required=True, help="output folder, created (required)")
    p.add_argument("--protocol", default="dpsh", choices=("dpsh", "deephash", "full"),
                   help="split protocol (default: dpsh, as MAH/ADSH)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    return p


def main(args):
    info = get_dataset("cifar10")
    data = load_cifar10(args.data_root)
    split = make_split(data.labels, args.protocol, args.seed, info.query, info.train, data.n_train)
    for part, mah in PARTS.items():
        folder = os.path.join(args.out, f"{mah}_img")
        os.makedirs(folder, exist_ok=True)
        names = [f"{mah}_img/{i:05d}.png" for i in split[part]]
        for i, name in zip(split[part], names):
            Image.fromarray(data.images[i]).save(os.path.join(args.out, name))
        write_mah_lists(args.out, mah, names, data.labels[split[part]])
    meta = {"protocol": args.protocol, "seed": args.seed, "n_train": data.n_train,
            **{f"n_{part}": len(index) for part, index in split.items()}}
    write_text_atomic(os.path.join(args.out, "prepared.json"), json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.out}: " + ", ".join(f"{len(split[p])} {m}" for p, m in PARTS.items()))


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
