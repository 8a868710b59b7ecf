"""One entry point to every data set: `load_data(name, ...)` -> query / database / train parts.

Array data sets (cifar10, digits) come back as one uint8 image array plus index
arrays per part (served by utils.data.images.ArrayImages); list-file data sets as one
utils.data.listfiles.ImageList per part (served by utils.data.images.FileImages).
"""
import importlib.util
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from utils.data.cifar10 import load_cifar10
from utils.data.datasets import get_dataset
from utils.errors import UserError
from utils.cache import unpacked
from utils.data.listfiles import PUBLISHED, mah_list_files, overlap_note, read_hashnet_list, read_mah_lists
from utils.data.splits import PARTS, load_or_make_split, load_split, make_split, save_split


@dataclass
class Part:
    labels: np.ndarray  # (n,) class ids, or n x C multi-hot
    index: np.ndarray = None  # array data sets: rows of RetrievalData.images
    list: object = None  # list-file data sets: the ImageList


@dataclass
class RetrievalData:
    info: object  # the utils.data.datasets.Dataset entry
    query: Part
    database: Part
    train: Part
    images: np.ndarray = None  # array data sets: N x 32 x 32 x 3 uint8
    drawn: tuple = None  # (split, what it was made from) when drawn by this load and not saved yet

    def save_split(self, path):
        """Write the split this load drew to `path` (a run does so once its inputs are checked)."""
        if self.drawn:
            save_split(path, self.drawn[0], **self.drawn[1])


def load_digits():
    """scikit-learn's 1,797 real 8x8 digits as 32x32 RGB uint8 (N x 32 x 32 x 3) and labels.

    Read from the file the scikit-learn package ships (one CSV row per image: 64 grey levels
    0..16, then the label), without importing scikit-learn: that import takes about 2 s, paid
    by every process that trains on digits (the tests start dozens)."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running its __init__
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else ""
    if not os.path.isfile(path):
        raise UserError("the digits data set is read from the scikit-learn package, which is not installed; "
                        "pip install scikit-learn")
    rows = np.loadtxt(path, delimiter=",", dtype=np.int64)  # N x 65
    small = torch.from_numpy(rows[:, :64].reshape(-1, 1, 8, 8)).float().div(16)  # N x 1 x 8 x 8 in [0, 1]
    big = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    images = (big.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    return images.permute(0, 2, 3, 1).numpy().copy(), rows[:, 64].copy()


def load_data(name, data_root=None, image_root=None, path_prefix=None, protocol="dpsh", seed=0,
              split_file=None, cache_dir=None, download=False, missing="error", settings=None):
    """The data set's parts. split_file: a saved split to reuse when it exists, else where the
    split drawn from `seed` is saved; None draws one and keeps it in `drawn`, unsaved.
    settings: the run's arguments, where a user's own data (utils.data.own) finds its options."""
    info = get_dataset(name)
    if info.source == "own":
        from utils.data.own import load_own  # it builds on this module's parts

        return load_own(info, data_root, image_root, path_prefix, protocol, seed, split_file, missing, settings or {})
    if info.source == "lists":
        return _load_lists(info, data_root, image_root, path_prefix, seed, split_file, missing)
    if protocol not in info.protocols:
        raise UserError(f"protocol {protocol!r} is not defined for {info.name}; "
                        f"choose from {', '.join(info.protocols)}")
    if info.source == "digits":
        images, labels, n_train, split = *load_digits(), None, None
    else:
        if not data_root:
            raise UserError("cifar10 needs --data-root: a folder or archive holding CIFAR-10 in any official "
                            "form or as train/ + test/ image folders (see data/README.md), or add --download")
        arr = load_cifar10(data_root, cache_dir=cache_dir, download=download)
        images, labels, n_train, split = arr.images, arr.labels, arr.n_train, arr.split
    drawn = None
    if split is None and split_file is None:
        split = make_split(labels, protocol, seed, info.query, info.train, n_train)
        drawn = split, dict(protocol=protocol, seed=seed, dataset=info.name)
    elif split is None:  # a prepared layout fixes its own split
        split = load_or_make_split(split_file, labels, protocol, seed, info.query, info.train, n_train,
                                   dataset=info.name)
    parts = {name: Part(labels[index], index=index) for name, index in split.items()}
    return RetrievalData(info, parts["query"], parts["database"], parts["train"], images=images, drawn=drawn)


def _load_lists(info, data_root, image_root, path_prefix, seed, split_file, missing):
    if not data_root or not os.path.exists(data_root):
        raise UserError(f"{info.name} needs --data-root: the folder (or .tar) holding its list files "
                        f"(database_img.txt/test_img.txt, or train.txt/database.txt/test.txt); see data/README.md")
    data_root = unpacked(data_root)
    lists = data_root
    if not os.path.exists(mah_list_files(data_root, "database")[0]) and os.path.isdir(
            os.path.join(data_root, PUBLISHED)):  # an official layout with the published split beside the images
        lists = os.path.join(data_root, PUBLISHED)
    image_root = image_root or data_root
    database_list = mah_list_files(lists, "database")[0]
    if os.path.exists(database_list):  # MAH style: train on the database
        # the original's own lists: its column order, and its absolute paths moved under image_root
        published = database_list.endswith("_image.txt")
        columns = info.original_columns if published else ()
        if published and info.original_prefix and not path_prefix:
            path_prefix = f"{info.original_prefix}={image_root.rstrip(os.sep)}{os.sep}"
        read = {part: read_mah_lists(lists, part, info.classes, image_root, path_prefix, missing=missing,
                                     columns=columns) for part in ("database", "test")}
        read["train"] = read["database"]
    elif os.path.exists(os.path.join(lists, "database.txt")):  # HashNet style
        read = {part: read_hashnet_list(os.path.join(lists, f"{part}.txt"), info.classes, image_root, path_prefix,
                                        missing=missing) for part in ("train", "database", "test")}
    else:
        raise UserError(f"no list files in {data_root}: expected database_img.txt + test_img.txt (MAH), "
                        f"train.txt + database.txt + test.txt (HashNet), or {PUBLISHED}/ with the lists published "
                        "with the original code; see data/README.md")
    if not info.multi_label:
        for lst in read.values():
            bad = np.flatnonzero(lst.labels.sum(1) != 1)
            if bad.size:
                list_file, line = lst.source[bad[0]]
                raise UserError(f"{list_file}:{line}: {info.name} is single-label, but this line has "
                                f"{lst.labels[bad[0]].sum()} labels set")
    note = overlap_note(read["test"], read["database"], info.queries_in_database)
    if note:
        print(note, file=sys.stderr)
    read, drawn = _shuffled(read, seed, split_file, info.name)
    labels = {part: lst.labels if info.multi_label else lst.labels.argmax(1) for part, lst in read.items()}
    parts = {part: Part(labels[part], list=lst) for part, lst in read.items()}
    return RetrievalData(info, parts["query"], parts["database"], parts["train"], drawn=drawn)


def _shuffled(read, seed, split_file, dataset):
    """The lists {"database", "test", "train"} as {"query", "database", "train"}, each in a
    seeded random order (see utils.data.splits: list files are often grouped by class), saved as
    positions into each list in `split_file` and reused from there; and the split drawn, with
    what it was made from, when no split_file was given (else None)."""
    lists = {"query": read["test"], "database": read["database"], "train": read["train"]}
    drawn = None
    if split_file and os.path.exists(split_file):
        order = load_split(split_file, {part: len(lst.paths) for part, lst in lists.items()}, dataset=dataset)
    else:
        rng = np.random.default_rng(seed)
        order = {part: rng.permutation(len(lst.paths)) for part, lst in lists.items()}
        if lists["train"] is lists["database"]:  # MAH lists: training on the database, in the same order
            order["train"] = order["database"]
        # with the count of listed images left out for missing files (--missing-images drop)
        meta = dict(dataset=dataset, seed=seed, order="positions in each list file",
                    missing_dropped={part: lst.dropped for part, lst in lists.items()})
        if split_file:
            save_split(split_file, order, **meta)
        else:
            drawn = order, meta
    return {part: lists[part].take(order[part]) for part in PARTS}, drawn
