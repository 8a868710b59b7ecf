"""Seeded query / database / train splits of single-label image arrays, saved as index files.

Protocols (sizes per class from utils.data.datasets, CIFAR-10 given here):
- "dpsh" (MAH/ADSH/DPSH): 100 queries per class, the rest (5,900 per class) is the
  database, and a 500-per-class train subset is drawn inside the database. MAH
  samples its training items from the whole database; train is for methods that
  train on the subset.
- "deephash": 100 queries, 500 train and the remaining 5,400 database per class,
  all disjoint (54,000 database).
- "full": queries = the official test set, database = train = the official train set.
The original MAH split was unseeded and is lost; here it is drawn from `seed` and
written to a JSON index file, which later runs reuse.

Order. Each part comes in a seeded random order, never grouped by class: ranking
metrics with ties="index" break ties by database position, and a class-grouped
database would let a query of class 0 find its relevant items first in every tie
(the original ranked with an unstable sort over a database in effectively random
order). The draw depends only on the labels of each class's images in canonical
order (utils.data.cifar10), taken class by class, so every form of CIFAR-10 that lists
a class's images in the same order gives the same images in the same order.
"""
import json
import os

import numpy as np

from utils.atomic import atomic_write
from utils.errors import UserError

PARTS = ("query", "database", "train")
PROTOCOLS = ("dpsh", "deephash", "full")


def make_split(labels, protocol, seed, per_class_query, per_class_train=0, n_train=None):
    """{"query", "database", "train"}: int64 index arrays into `labels`, each in a seeded random order."""
    labels = np.asarray(labels)
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose dpsh, deephash or full")
    if protocol == "full" and (n_train is None or not 0 < n_train < len(labels)):
        raise UserError("protocol 'full' needs the official train/test boundary of the data set")
    rng = np.random.default_rng(seed)
    query, train, database = [], [], []
    for c in np.unique(labels):
        if protocol == "full":  # the official boundary decides; members stay in canonical order
            members = np.flatnonzero(labels == c)
            query.append(members[members >= n_train])
            database.append(members[members < n_train])
            continue
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
            train.append(rest[:per_class_train])  # the train subset is drawn inside the database
    split = {name: rng.permutation(np.concatenate(part)) for name, part in zip(PARTS, (query, database))}
    # a train part that is the whole database keeps the database's order
    whole = protocol == "full" or (protocol == "dpsh" and not per_class_train)
    split["train"] = split["database"] if whole else rng.permutation(np.concatenate(train))
    return split


def save_split(path, split, **meta):
    """Write the split and what it was made from (dataset, protocol, seed, ...) as JSON, atomically."""
    record = dict(meta, **{name: split[name].tolist() for name in PARTS})
    atomic_write(path, lambda f: json.dump(record, f), mode="w")


def load_split(path, n_items, **expected):
    """Read a split file, checking that it fits the data and the requested protocol.

    n_items: the number of items the indices point into, or {part: number} when every
    part indexes a list of its own (then each part must be a permutation of it)."""
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
        n = n_items[name] if isinstance(n_items, dict) else n_items
        if isinstance(n_items, dict) and len(index) != n:
            raise UserError(f"split file {path}: {name} orders {len(index)} images, its list has {n}; the list "
                            "files changed: remove the split file to draw a new order")
        if index.size and (index.min() < 0 or index.max() >= n):
            raise UserError(f"split file {path}: {name} indices exceed the {n} images of the data set")
    return split


def load_or_make_split(path, labels, protocol, seed, per_class_query, per_class_train=0, n_train=None, **meta):
    """The split in `path` when it exists, else a new one drawn from `seed` and saved there."""
    if path and os.path.exists(path):
        return load_split(path, len(labels), protocol=protocol, **meta)
    split = make_split(labels, protocol, seed, per_class_query, per_class_train, n_train)
    if path:
        save_split(path, split, protocol=protocol, seed=seed, **meta)
    return split


# Validation split (docs/MMHH.md): this share of a training part, rounded, is held out as
# validation queries; the rest is their database and what the model trains on
VALIDATION_SHARE = 0.1


def make_validation(n_train, seed):
    """{"query", "database"}: disjoint positions into a training part of n_train items, together
    all of them, each in a seeded random order; queries round(VALIDATION_SHARE n_train), at least 1."""
    if n_train < 2:
        raise UserError(f"a validation split needs at least 2 training items, the training part has {n_train}")
    order = np.random.default_rng([seed, 17]).permutation(n_train)  # not the stream the split was drawn from
    queries = min(max(1, round(VALIDATION_SHARE * n_train)), n_train - 1)
    return {"query": order[:queries], "database": order[queries:]}


def read_validation(path, n_train, seed):
    """The validation split saved in the split file `path`, or None when it holds none; checked
    against the training part's size and the seed."""
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f).get("validation")
        if record is None:
            return None
        split = {name: np.asarray(record[name], dtype=np.int64) for name in ("query", "database")}
        made = (record["train_items"], record["seed"])
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        raise UserError(f"split file {path}: its validation split is unreadable ({type(e).__name__}: {e}); delete "
                        "the file to draw a new split")
    if made != (n_train, seed):
        raise UserError(f"split file {path}: its validation split was made from {made[0]} training items with seed "
                        f"{made[1]}, this run has {n_train} with seed {seed}; remove the file to draw a new split")
    both = np.concatenate([split["query"], split["database"]])
    if not len(split["query"]) or len(np.unique(both)) != len(both) or both.min() < 0 or both.max() >= n_train:
        raise UserError(f"split file {path}: its validation split is no division of the {n_train} training items "
                        "into queries and database; remove the file to draw a new split")
    return split


def save_validation(path, split, seed):
    """Add the validation split (of make_validation) to the split file `path` (created when
    absent), atomically."""
    n_train = len(split["query"]) + len(split["database"])
    record = {}
    if os.path.exists(path):
        with open(path) as f:
            record = json.load(f)
    record["validation"] = {"train_items": n_train, "seed": seed, "share": VALIDATION_SHARE,
                            **{name: np.asarray(split[name]).tolist() for name in ("query", "database")}}
    atomic_write(path, lambda f: json.dump(record, f), mode="w")
