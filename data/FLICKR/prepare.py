"""MIRFlickr-25K -> the MAH list files (test_img.txt, test_label.txt, database_img.txt,
database_label.txt) and prepared.json.

Official data: the LIACS MIRFlickr site (https://press.liacs.nl/mirflickr/), files
`mirflickr25k.zip` (the images `mirflickr/im1.jpg` ... `im25000.jpg`) and
`mirflickr25k_annotations_v080.zip` (one text file per concept listing the 1-based
numbers of the images that carry it, plus a README.txt). Unzip both into one folder
(or give a .tar of that layout, such as ../shared/data/mirflickr25k-20k.tar) and run,
from the repository root:

    python data/FLICKR/prepare.py --root /path/to/that/folder

Labels: the 38 annotation files (24 concepts and their 14 `_r1` "relevant" versions),
sorted by file name, as 0/1 columns. Split (`--split`): `published` (default), the
1,700 queries and 23,300 database images of the lists published with the original MAH
code (`test_image.txt`, `database_image.txt` and their `_label.txt`, looked for in
`mah-original-lists/` under --root or in --lists), their label columns mapped to the
alphabetical order and checked against the annotation files; or `seeded`, 1,700 queries
drawn from --seed and the other 23,300 images as the database. Unlabelled images stay,
as in the original lists.
"""
import argparse
import json
import os
import re
import sys

import numpy as np

# the script is run by path from data/FLICKR/, so the repository root (home of utils)
# is not on sys.path by itself
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from utils.cache import unpacked  # noqa: E402
from utils.data.datasets import get_dataset  # noqa: E402
from utils.errors import UserError, run  # noqa: E402
from utils.data.listfiles import PUBLISHED, read_mah_lists, write_mah_lists, write_text_atomic  # noqa: E402

ANNOTATION_FOLDER = "mirflickr25k_annotations_v080"
N_COLUMNS = 38
IMAGE_NAME = re.compile(r"im(\d+)\.jpg")


def get_args_parser():
    p = argparse.ArgumentParser(description="Build the MAH list files of MIRFlickr-25K.")
    p.add_argument("--root", required=True,
                   help="folder holding mirflickr/ (or mirflickr/ itself), or a .tar of it (unpacked once into "
                        "cache/); the list paths start from the folder holding mirflickr/ (required)")
    p.add_argument("--split", choices=("published", "seeded"), default="published",
                   help="the original MAH code's published lists, or --queries images drawn from --seed "
                        "(default: published)")
    p.add_argument("--lists", default=None,
                   help=f"folder of the published lists test_image.txt, database_image.txt, ... (default: "
                        f"{PUBLISHED}/ under --root)")
    p.add_argument("--missing-images", choices=("error", "drop"), default="error",
                   help="published rows whose image is absent: stop with the count and the first one, or leave "
                        "them out and record how many in prepared.json (default: error)")
    p.add_argument("--annotations", default=None,
                   help=f"folder of the annotation .txt files (default: {ANNOTATION_FOLDER}/ under "
                        "--root, else the .txt files in --root itself)")
    p.add_argument("--queries", type=int, default=1700, help="query images of --split seeded (default: 1700, as MAH)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query draw of --split seeded (default: 0)")
    p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                   help="output folder (default: data/FLICKR/, the folder of this script)")
    return p


def find_images(root):
    """(image_root, folder name, N): the images are <image_root>/<folder>/im1.jpg ... imN.jpg."""
    if not os.path.isdir(root):
        raise UserError(f"--root {root} is not a folder; point it at the folder where mirflickr25k.zip was unzipped")
    root = os.path.abspath(root)
    folder = os.path.join(root, "mirflickr")
    if not os.path.isdir(folder):
        folder = root  # --root is mirflickr/ itself
    numbers = sorted(int(m.group(1)) for m in map(IMAGE_NAME.fullmatch, os.listdir(folder)) if m)
    if not numbers:
        raise UserError(f"no images im<k>.jpg in {folder}; point --root at the folder holding mirflickr/ "
                        "(unzip mirflickr25k.zip there)")
    if numbers != list(range(1, len(numbers) + 1)):
        missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        raise UserError(f"{folder}: images must be im1.jpg ... im{numbers[-1]}.jpg, but {len(missing)} are missing "
                        f"(first: im{missing[0]}.jpg); unzip mirflickr25k.zip again")
    return os.path.dirname(folder), os.path.basename(folder), len(numbers)


def find_annotations(args, image_root):
    """The annotation folder: --annotations, else the official folder name under --root (or beside
    mirflickr/ when --root is mirflickr/ itself), else --root."""
    if args.annotations:
        if not os.path.isdir(args.annotations):
            raise UserError(f"--annotations {args.annotations} is not a folder; unzip "
                            f"{ANNOTATION_FOLDER}.zip and point --annotations at it")
        return os.path.abspath(args.annotations)
    for base in (os.path.abspath(args.root), image_root):
        candidate = os.path.join(base, ANNOTATION_FOLDER)
        if os.path.isdir(candidate):
            return candidate
    return os.path.abspath(args.root)


def annotation_files(folder):
    """The label columns: every .txt but the README, sorted by file name."""
    names = sorted(f for f in os.listdir(folder)
                   if f.endswith(".txt") and f.lower() != "readme.txt" and os.path.isfile(os.path.join(folder, f)))
    if len(names) != N_COLUMNS:
        raise UserError(f"{folder} holds {len(names)} annotation files, {N_COLUMNS} expected (24 concepts and 14 "
                        f"_r1 versions); unzip {ANNOTATION_FOLDER}.zip again or pass --annotations")
    return [os.path.join(folder, f) for f in names]


def read_annotation(path, n_images):
    """An annotation file -> the 0-based indices of the images it lists."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e}); unzip {ANNOTATION_FOLDER}.zip again")
    indices = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            number = int(line)
        except ValueError:
            number = 0  # reported just below, with the out-of-range numbers
        if not 1 <= number <= n_images:
            raise UserError(f"{path}:{line_no}: expected an image number in 1..{n_images}, got {line.strip()!r}; "
                            f"the annotation files must match the images (unzip {ANNOTATION_FOLDER}.zip again)")
        indices.append(number - 1)
    return np.asarray(indices, dtype=np.int64)


def label_matrix(files, n_images):
    labels = np.zeros((n_images, len(files)), np.uint8)  # N x 38
    for column, path in enumerate(files):
        labels[read_annotation(path, n_images), column] = 1
    return labels


def draw_queries(n_images, queries, seed):
    """Sorted query indices and the sorted remaining (database) indices."""
    if not 0 < queries < n_images:
        raise UserError(f"--queries {queries} must be between 1 and {n_images - 1} (there are {n_images} images)")
    is_query = np.zeros(n_images, bool)
    is_query[np.random.default_rng(seed).choice(n_images, queries, replace=False)] = True
    return np.flatnonzero(is_query), np.flatnonzero(~is_query)


def published_split(args, root, image_root, labels):
    """Query and database indices (0-based image numbers) of the published lists, their rows whose
    image is absent dropped or refused (--missing-images), and how many were dropped."""
    folder = args.lists or os.path.join(root, PUBLISHED)
    if not os.path.isdir(folder):
        raise UserError(f"no published lists at {folder}: give --lists, the folder of the original MAH code's "
                        "Flickr-25 lists (test_image.txt, database_image.txt, ...), or pass --split seeded")
    info = get_dataset("flickr25k")
    prefix = f"{info.original_prefix}={image_root}{os.sep}"
    parts, dropped = [], {}
    for split in ("test", "database"):
        listed = read_mah_lists(folder, split, N_COLUMNS, image_root, prefix, missing=args.missing_images,
                                columns=info.original_columns)
        index = np.array([int(IMAGE_NAME.fullmatch(os.path.basename(p)).group(1)) - 1 for p in listed.paths])
        wrong = int((listed.labels != labels[index]).any(1).sum())
        if wrong:  # the column mapping, or the annotation files, are not the ones the lists were made with
            raise UserError(f"{folder}: the labels of {wrong} {split} images differ from the annotation files; "
                            "check --annotations")
        parts.append(index)
        dropped[split] = listed.dropped
    return parts[0], parts[1], dropped


def main(args):
    root = unpacked(args.root)
    image_root, folder, n_images = find_images(root)
    annotations = find_annotations(argparse.Namespace(**{**vars(args), "root": root}), image_root)
    files = annotation_files(annotations)
    labels = label_matrix(files, n_images)
    if args.split == "published":
        query, database, dropped = published_split(args, root, image_root, labels)
    else:
        (query, database), dropped = draw_queries(n_images, args.queries, args.seed), {}
    paths = np.array([f"{folder}/im{k}.jpg" for k in range(1, n_images + 1)])
    os.makedirs(args.out, exist_ok=True)
    write_mah_lists(args.out, "test", paths[query], labels[query])
    write_mah_lists(args.out, "database", paths[database], labels[database])
    unlabelled = ~labels.any(1)
    record = {
        "dataset": "MIRFlickr-25K", "split": args.split, "images": n_images,
        **({"seed": args.seed} if args.split == "seeded" else {"missing_dropped": dropped}),
        "queries": len(query), "database": len(database),
        "unlabelled_queries": int(unlabelled[query].sum()), "unlabelled_database": int(unlabelled[database].sum()),
        "columns": [os.path.basename(f)[:-len(".txt")] for f in files],
        "source": image_root, "annotations": annotations,
    }
    write_text_atomic(os.path.join(args.out, "prepared.json"), json.dumps(record, indent=1) + "\n")
    print(f"wrote {len(query)} queries and {len(database)} database images "
          f"({record['unlabelled_queries']} + {record['unlabelled_database']} unlabelled) to {args.out}"
          + (f"; left out for missing images: {dropped}" if any(dropped.values()) else "")
          + f"; train with --data-root {args.out} --image-root {image_root}")


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
