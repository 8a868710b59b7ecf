"""Seeded query / database / train splits of single-label image arrays, saved as index files.

Protocols (sizes per class from utils.datasets, CIFAR-10 given here):
- "dpsh" (MAH/ADSH/DPSH): 100 queries per class, the rest (5,900 per class) is the
  database, and a 500-per-class train subset is drawn inside the database. MAH
  samples its training items from the whole database; train is for methods that
  train on the subset.
- "deephash": 100 queries, 500 train and the remaining 5,400 database per class,
  all disjoint (54,000 database).
- "full": queries = the official test set, database = train = the official train set.
The original MAH split was unseeded and is lost; here it is drawn from `seed` and
written to a JSON index file, which later runs reuse.
"""
import json
import os

import numpy as np

from utils.atomic import atomic_write
from utils.errors import UserError

PARTS = ("query", "database", "train")


def make_split(labels, protocol, seed, per_class_query, per_class_train=0, n_train=None):
    """{"query", "database", "train"}: sorted int64 index arrays into `labels`."""
    labels = np.asarray(labels)
    if protocol == "full":
        if n_train is None or not 0 < n_train < len(labels):
            raise UserError("protocol 'full' needs the official train/test boundary of the data set")
        train = np.arange(n_train)
        return {"query": np.arange(n_train, len(labels)), "database": train, "train": train}
    if protocol not in ("dpsh", "deephash"):
        raise UserError(f"unknown protocol {protocol!r}; choose dpsh, deephash or full")
    rng = np.random.default_rng(seed)
    query, train, database = [], [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        need = per_class_query + per_class_train
        if len(members) <= need:
            raise UserError(f"class {c} has {len(members)} images, protocol {protocol!r} needs more than {need}")
        query.append(members[:per_class_query])
        rest = members[per_class_query:]
        if protocol == "deephash":
            train.append(rest[:per_class_train])
            database.append(rest[per_class_train:])
        else:
            database.append(rest)
            # the train subset is drawn inside the database
            train.append(rest[:per_class_train] if per_class_train else rest)
    return {name: np.sort(np.concatenate(part)) for name, part in zip(PARTS, (query, database, train))}


def save_split(path, split, **meta):
    """Write the split and what it was made from (dataset, protocol, seed, ...) as JSON, atomically."""
    record = dict(meta, **{name: split[name].tolist() for name in PARTS})
    atomic_write(path, lambda f: json.dump(record, f), mode="w")


def load_split(path, n_items, **expected):
    """Read a split file, checking that it fits the data and the requested protocol."""
    try:
        with open(path) as f:
            record = json.load(f)
        split = {name: np.asarray(record[name], dtype=np.int64) for name in PARTS}
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"split file {path} is unreadable ({type(e).__name__}: {e}); delete it to draw a new split")
    for key, value in expected.items():
        if key in record and record[key] != value:
            raise UserError(f"split file {path} was made with {key}={record[key]!r}, this run asks for "
                            f"{value!r}; pass a matching option, or remove the file to draw a new split")
    for name, index in split.items():
        if index.size and (index.min() < 0 or index.max() >= n_items):
            raise UserError(f"split file {path}: {name} indices exceed the {n_items} images of the data set")
    return split


def load_or_make_split(path, labels, protocol, seed, per_class_query, per_class_train=0, n_train=None, **meta):
    """The split in `path` when it exists, else a new one drawn from `seed` and saved there."""
    if path and os.path.exists(path):
        return load_split(path, len(labels), protocol=protocol, **meta)
    split = make_split(labels, protocol, seed, per_class_query, per_class_train, n_train)
    if path:
        save_split(path, split, protocol=protocol, seed=seed, **meta)
    return split
