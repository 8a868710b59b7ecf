"""Two evaluation protocols applied on top of a data set's split (docs/protocols.md): noisy
supervision and unseen classes. Both are this project's definitions (the MMHH paper ran
them, its code and settings were never released); every random choice comes from the seed.

- Label noise P (`--label-noise`): a seeded fraction P of the training items (exactly
  round(P n)) take the label row of a uniformly drawn training item with which they share
  no label, so every pair they form with a clean item is wrong the same way. Only the labels
  the loss (and MAH's DCC) sees change; queries and database keep their true labels.
- Unseen classes (`--protocol unseen`, after Sablayrolles, Douze, Usunier and Jegou, "How
  should we evaluate supervised hashing?", ICASSP 2017): a seeded round(f C) of the C
  classes are seen (f = `--seen-fraction`, 0.75 by default). Training keeps the training
  items whose labels are all seen; queries and database keep their items with at least one
  unseen label, and relevance is computed on the unseen labels only.

Below both, the validation split (`--eval_on val`): a seeded tenth of the training part as
queries, the rest as their database and as what the model trains on; the protocols then
apply to those parts as they would to the test split.
"""
import dataclasses

import numpy as np

from utils.data.labels import label_matrix
from utils.data.splits import make_validation, read_validation
from utils.errors import UserError


def noisy_labels(labels, classes, rate, seed):
    """(labels with a seeded round(rate n) of the rows replaced, sorted indices of those rows).

    Items are taken in a seeded random order; each takes the labels of a uniformly drawn row
    that shares no label with it (an item that shares a label with every row is passed over,
    and a rate that then cannot be met is a UserError). Labels keep their form (ids or rows)."""
    if not 0 <= rate < 1:
        raise UserError(f"--label-noise {rate:g}: the rate must be in [0, 1)")
    labels = np.asarray(labels)
    rows = label_matrix(labels, classes, "cpu").numpy()  # n x C
    n = len(labels)
    count = round(rate * n)
    rng = np.random.default_rng([seed, 7])
    noisy, chosen = labels.copy(), []
    by_class = {c: np.flatnonzero(labels != c) for c in np.unique(labels)} if labels.ndim == 1 else None
    for i in rng.permutation(n):
        if len(chosen) == count:
            break
        # every row sharing no label with row i (one label an item: every item of another class)
        donors = by_class[labels[i]] if by_class is not None else np.flatnonzero(rows @ rows[i] == 0)
        if len(donors):
            noisy[i] = labels[donors[rng.integers(len(donors))]]
            chosen.append(i)
    if len(chosen) < count:
        raise UserError(f"--label-noise {rate:g} asks for {count} corrupted items, but only {len(chosen)} of the "
                        f"{n} training items share no label with another; lower the rate")
    return noisy, np.sort(np.array(chosen, np.int64))


def unseen_classes(classes, seen_fraction, seed):
    """Sorted unseen class ids: all but a seeded round(seen_fraction C) of the classes."""
    if not 0 < seen_fraction < 1:
        raise UserError(f"--seen-fraction {seen_fraction:g}: the fraction must be in (0, 1)")
    seen = round(seen_fraction * classes)
    if not 0 < seen < classes:
        raise UserError(f"--seen-fraction {seen_fraction:g} of {classes} classes leaves no seen or no unseen class; "
                        "choose a fraction that splits them")
    order = np.random.default_rng([seed, 11]).permutation(classes)
    return np.sort(order[seen:])


def apply_unseen(data, seen_fraction, seed, train_from="train"):
    """The data set's parts under the unseen-classes protocol, and what was done (for the
    records): train keeps the items of `train_from` (MAH trains on its database) with only
    seen labels, query and database their items with an unseen label, whose label rows keep
    only their unseen labels (relevance on those)."""
    C = data.info.classes
    unseen = unseen_classes(C, seen_fraction, seed)
    mask = np.zeros(C, bool)
    mask[unseen] = True
    parts = {}
    for name in ("train", "query", "database"):
        part = getattr(data, train_from if name == "train" else name)
        rows = label_matrix(part.labels, C, "cpu").numpy() > 0  # n x C
        keep = np.flatnonzero(~rows[:, mask].any(1) if name == "train" else rows[:, mask].any(1))
        if not len(keep):
            raise UserError(f"--protocol unseen leaves the {name} part of {data.info.name} empty (unseen classes "
                            f"{unseen.tolist()}); choose another --seen-fraction or --seed")
        labels = part.labels[keep]
        if name != "train" and labels.ndim == 2:  # relevance on the unseen labels only
            labels = labels * mask.astype(labels.dtype)
        parts[name] = _take(part, keep, labels)
    record = {"protocol": "unseen", "seen_fraction": seen_fraction, "unseen_classes": unseen.tolist(),
              **{f"{name}_items": len(part.labels) for name, part in parts.items()}}
    return dataclasses.replace(data, **parts), record


def _take(part, keep, labels):
    if part.index is not None:
        return dataclasses.replace(part, labels=labels, index=part.index[keep])
    return dataclasses.replace(part, labels=labels, list=part.list.take(keep))


def validation(data, seed, split_file=None):
    """(the data with the validation split in place of the test split, that split): queries a
    seeded share of the training part (utils.data.splits.make_validation), its rest as database
    and training part, so that no test query is seen (nor the database, where the training part
    lies apart from it). The split in split_file is reused when it holds one."""
    n = len(data.train.labels)
    split = read_validation(split_file, n, seed) or make_validation(n, seed)
    query, rest = (_take(data.train, split[name], data.train.labels[split[name]]) for name in ("query", "database"))
    return dataclasses.replace(data, query=query, database=rest, train=rest), split


def split_protocol(protocol, default):
    """The split a protocol starts from: unseen classes filter the data set's default split."""
    return default if protocol == "unseen" else protocol


def prepare(data, protocol, seen_fraction, label_noise, seed, train_from):
    """The data under `protocol` and the labels training sees: (data, training part name,
    its training labels, record). train_from: the part a method trains on (MAH: database;
    MMHH: train); under unseen classes that part's seen items become the training part."""
    record = {"protocol": protocol, "label_noise": label_noise}
    part = train_from
    if protocol == "unseen":
        data, unseen = apply_unseen(data, seen_fraction, seed, train_from)
        record.update(unseen)
        part = "train"
    labels, corrupted = noisy_labels(getattr(data, part).labels, data.info.classes, label_noise, seed)
    record.update(corrupted_items=len(corrupted), corrupted=corrupted.tolist())
    return data, part, labels, record


def summary(record):
    """The record without the list of corrupted indices (results files; protocol.json has it) and
    the validation split (split.json has it)."""
    return {k: v for k, v in record.items() if k not in ("corrupted", "validation_split")}
