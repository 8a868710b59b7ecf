"""NUS-WIDE -> the MAH list files (test_img.txt, test_label.txt, database_img.txt,
database_label.txt) of its 21 most frequent concepts, and prepared.json.

Official data: the NUS LMS site (https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html):
the image list (`ImageList/Imagelist.txt`, 269,648 Windows paths), the concept list
(`Concepts81.txt`) and the ground truth (`Groundtruth/AllLabels/Labels_<concept>.txt`,
one 0/1 a line, in Imagelist order). Unzip them into one folder and run, from the
repository root:

    python data/NUS-WIDE/prepare.py --root /path/to/that/folder

The images themselves (`Flickr/<concept>/<id>.jpg`) are not read: the list paths are
relative to the folder holding `Flickr/`, which training takes as --image-root.
Images carrying none of the kept concepts are dropped; the queries are 100 seeded
images per kept concept, all distinct; the database is the rest.
"""
import argparse
import json
import os
import sys

import numpy as np

# the script is run by path from data/NUS-WIDE/, so the repository root (home of utils)
# is not on sys.path by itself
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from utils.errors import UserError, run  # noqa: E402
from utils.data.listfiles import write_mah_lists, write_text_atomic  # noqa: E402

WINDOWS_PREFIX = "ImageData\\"  # Imagelist paths read C:\ImageData\Flickr\<concept>\<id>.jpg


def get_args_parser():
    p = argparse.ArgumentParser(description="Build the MAH list files of NUS-WIDE (most frequent concepts).")
    p.add_argument("--root", required=True,
                   help="folder where the NUS-WIDE lists and ground truth were unzipped (required)")
    p.add_argument("--image-list", default=None, help="the image list (default: <root>/ImageList/Imagelist.txt)")
    p.add_argument("--concepts", default=None, help="the concept list (default: <root>/Concepts81.txt)")
    p.add_argument("--labels-dir", default=None,
                   help="folder of Labels_<concept>.txt (default: <root>/Groundtruth/AllLabels)")
    p.add_argument("--concepts-kept", type=int, default=21,
                   help="keep this many most frequent concepts (default: 21, as MAH and DPSH)")
    p.add_argument("--queries-per-concept", type=int, default=100,
                   help="query images drawn per kept concept (default: 100, i.e. 2,100 queries, as MAH)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query draw (default: 0)")
    p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                   help="output folder (default: data/NUS-WIDE/, the folder of this script)")
    return p


def read_lines(path, what):
    """The lines of a text file, trailing blank lines dropped (a final newline is not an entry)."""
    if not os.path.isfile(path):
        raise UserError(f"{what} {path} not found; unzip the official NUS-WIDE files under --root "
                        "or give its location (see data/NUS-WIDE/README.md)")
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} is unreadable ({e}); download it again")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_image_list(path):
    """Imagelist.txt -> relative paths 'Flickr/<concept>/<id>.jpg'."""
    paths = []
    for line_no, line in enumerate(read_lines(path, "image list"), 1):
        relative = line.strip().split(WINDOWS_PREFIX, 1)[-1].replace("\\", "/")
        # a space would split the path in the list files, a drive or leading / would make it absolute
        if not relative or relative.startswith("/") or ":" in relative or " " in relative:
            raise UserError(f"{path}:{line_no}: expected a path like C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg "
                            f"(no spaces), got {line!r}; use the official Imagelist.txt")
        paths.append(relative)
    if not paths:
        raise UserError(f"image list {path} is empty; use the official Imagelist.txt")
    return paths


def read_concepts(path):
    names = [line.strip() for line in read_lines(path, "concept list")]
    if not names or not all(names) or len(set(names)) != len(names):
        raise UserError(f"{path}: expected one distinct concept name a line, without blank lines; "
                        "use the official Concepts81.txt")
    return names


def read_label_column(path, n_images):
    """Labels_<concept>.txt -> N bool, checking that it has one 0/1 line per listed image."""
    values = np.char.strip(np.array(read_lines(path, "label file"), dtype=str))
    if len(values) != n_images:
        raise UserError(f"{path} has {len(values)} lines but the image list has {n_images}; the label files "
                        "and Imagelist.txt must come from the same NUS-WIDE release")
    ones = values == "1"
    bad = np.flatnonzero(~ones & (values != "0"))
    if bad.size:
        raise UserError(f"{path}:{bad[0] + 1}: expected 0 or 1, got {values[bad[0]]!r}; "
                        "download the ground truth again")
    return ones


def label_matrix(labels_dir, concepts, n_images):
    if not os.path.isdir(labels_dir):
        raise UserError(f"label folder {labels_dir} not found; unzip Groundtruth.zip under --root or pass --labels-dir")
    columns = [read_label_column(os.path.join(labels_dir, f"Labels_{name}.txt"), n_images) for name in concepts]
    return np.stack(columns, axis=1).astype(np.uint8)  # N x 81


def most_frequent(frequencies, kept):
    """Column indices of the `kept` most frequent concepts, in concept-list order; a stable
    sort breaks ties by that order."""
    if not 2 <= kept <= len(frequencies):
        # one column would be read back as a class index (utils.listfiles), hence at least 2
        raise UserError(f"--concepts-kept {kept} must be between 2 and {len(frequencies)}, the number of concepts")
    return np.sort(np.argsort(-frequencies, kind="stable")[:kept])


def draw_queries(labels, per_concept, seed, names):
    """For each concept in column order, `per_concept` images carrying it that are not chosen
    yet -> sorted query indices and the sorted remaining (database) indices."""
    if per_concept < 1:
        raise UserError(f"--queries-per-concept {per_concept} must be at least 1")
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(labels), bool)
    for column, name in enumerate(names):
        candidates = np.flatnonzero(labels[:, column].astype(bool) & ~chosen)
        if len(candidates) < per_concept:
            raise UserError(f"concept {name!r} has {len(candidates)} images left for the queries, "
                            f"{per_concept} needed; lower --queries-per-concept")
        chosen[rng.choice(candidates, per_concept, replace=False)] = True
    if chosen.all():
        raise UserError("the queries take every image, leaving no database; lower --queries-per-concept")
    return np.flatnonzero(chosen), np.flatnonzero(~chosen)


def main(args):
    if not os.path.isdir(args.root):
        raise UserError(f"--root {args.root} is not a folder; point it at the folder where the NUS-WIDE files "
                        "were unzipped")
    root = os.path.abspath(args.root)
    image_list = args.image_list or os.path.join(root, "ImageList", "Imagelist.txt")
    concepts_file = args.concepts or os.path.join(root, "Concepts81.txt")
    labels_dir = args.labels_dir or os.path.join(root, "Groundtruth", "AllLabels")
    paths = np.array(read_image_list(image_list))
    concepts = read_concepts(concepts_file)
    n_listed = len(paths)
    labels = label_matrix(labels_dir, concepts, n_listed)
    frequencies = labels.sum(0, dtype=np.int64)
    kept = most_frequent(frequencies, args.concepts_kept)
    names = [concepts[c] for c in kept]
    labelled = np.flatnonzero(labels[:, kept].any(1))  # images with none of the kept concepts are dropped
    paths, labels = paths[labelled], labels[np.ix_(labelled, kept)]  # M x kept
    query, database = draw_queries(labels, args.queries_per_concept, args.seed, names)
    os.makedirs(args.out, exist_ok=True)
    write_mah_lists(args.out, "test", paths[query], labels[query])
    write_mah_lists(args.out, "database", paths[database], labels[database])
    record = {
        "dataset": "NUS-WIDE", "seed": args.seed, "images_listed": n_listed, "images_kept": len(labelled),
        "queries": len(query), "database": len(database), "queries_per_concept": args.queries_per_concept,
        "concepts": names,
        "frequencies": {name: int(f) for name, f in zip(concepts, frequencies)},  # all concepts, list order
        "source": root, "image_list": os.path.abspath(image_list), "labels_dir": os.path.abspath(labels_dir),
    }
    write_text_atomic(os.path.join(args.out, "prepared.json"), json.dumps(record, indent=1) + "\n")
    print(f"kept {len(labelled)} of {n_listed} images (concepts: {', '.join(names)}); wrote {len(query)} queries "
          f"and {len(database)} database images to {args.out}")


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
