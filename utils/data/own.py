"""A user's own images as a data set, with no table entry: the two generic sources.

- `folder`: an image tree, one folder per class (one label an image), as a folder or a
  .tar/.tar.gz/.zip archive. The split is drawn from the seed with the sizes of the
  options (queries in total or per class, training images, the rest the database) and saved
  as MAH-style list files in `lists/` beside the run's split.json; every later load of the run
  (resume, test_mmhh.py, the index) reads them back, and `--dataset lists` on that folder
  reuses the split in another run.
- `lists`: list files in MAH's or HashNet's format (utils.data.listfiles) with any number of
  label columns, counted from the files; the split the files give, each part in a seeded
  order (utils.data.loader).

What the table holds per data set is derived here (label count, single or multi label,
class names) or is the generic entry's default (utils.data.datasets.OWN), which the options
in ENTRY_OPTIONS change.
"""
import dataclasses
import os
import sys
from dataclasses import dataclass

import numpy as np

from utils.cache import unpacked
from utils.data.datasets import get_dataset
from utils.data.listfiles import (ImageList, header_error, mah_list_files, overlap_note, read_hashnet_list,
                                  read_lines, read_mah_lists, write_mah_lists, write_text_atomic)
from utils.data.loader import Part, RetrievalData, _shuffled
from utils.data.splits import make_split
from utils.errors import UserError
from utils.options import nonnegative_int, positive_int

SPLIT_OPTIONS = ("queries", "train_images", "per_class")  # the split of a folder
ENTRY_OPTIONS = ("mean", "std", "topk")  # what the table would hold: MAH's normalisation, MMHH's R
LISTS = "lists"  # the folder of a drawn split's list files, beside its split.json
FILES = {"query": "test", "database": "database", "train": "train"}  # part -> list file name (MAH's)
NAMES = ("classes.txt", "categories.txt")  # a list folder's class names, one a line, in column order


def flag(key):
    return "--" + key.replace("_", "-")


def add_options(parser, underscores=False):
    """The split options of --dataset folder, hyphenated (MAH's spelling), or underscored with
    the hyphenated spelling beside (MMHH's)."""
    def add(name, **kw):
        underscored = "--" + name[2:].replace("-", "_")
        parser.add_argument(*([underscored, name] if underscores and underscored != name else [name]), **kw)

    add("--queries", type=positive_int, help="--dataset folder: queries, drawn at random from all the images (per "
                                             "class with --per-class) (default: a tenth of them, at least 1)")
    add("--train-images", type=nonnegative_int,
        help="--dataset folder: training images, drawn from what the queries leave: inside the database under "
             "--protocol dpsh, apart from it under deephash (per class with --per-class) (default: 0, every database "
             "image trains)")
    add("--per-class", action="store_true", help="--dataset folder: --queries and --train-images count each class's "
                                                 "images (default: off, all the images)")


def check_options(datasets, given):
    """One line when an option of the generic sources is given for data sets it does not act on."""
    names = {get_dataset(d).name for d in datasets if d}
    for key in given:
        if key in SPLIT_OPTIONS and "folder" not in names:
            raise UserError(f"{flag(key)} sizes the split of --dataset folder; {', '.join(sorted(names))} has a split "
                            f"of its own: drop {flag(key)}")
        if key in ENTRY_OPTIONS and not names & {"folder", "lists"}:
            raise UserError(f"{flag(key)} sets what the data set table holds for --dataset folder or lists; "
                            f"{', '.join(sorted(names))} takes the table's: drop {flag(key)}")


@dataclass
class OwnData(RetrievalData):
    # (image root, {part: ImageList}, class names) of a folder split drawn by this load and not saved yet
    written: tuple = None

    def save_split(self, path):
        if self.drawn and self.written:
            write_lists(os.path.join(os.path.dirname(path), LISTS), *self.written)
        super().save_split(path)


def load_own(info, data_root, image_root, path_prefix, protocol, seed, split_file, missing, settings):
    """The parts of --dataset folder or lists (RetrievalData); `settings`: the run's arguments,
    where the options of SPLIT_OPTIONS and ENTRY_OPTIONS are read."""
    if not data_root or not os.path.exists(data_root):
        what = "a folder (or .tar/.tar.gz/.zip) of class folders" if info.name == "folder" else \
            "the folder (or archive) of its list files"
        raise UserError(f"--dataset {info.name} needs --data-root: {what}; {data_root or 'none'} was given "
                        "(see docs/data.md)")
    root = unpacked(data_root)
    if info.name == "lists":
        read, classes, names = read_lists(root, unpacked(image_root) if image_root else root, path_prefix, missing)
        note = overlap_note(read["test"], read["database"])
        if note:
            print(note, file=sys.stderr)
    else:
        if image_root or path_prefix:
            raise UserError("--image-root and --path-prefix place the images of list files; --dataset folder reads "
                            "those under --data-root: drop them")
        if not (split_file and os.path.exists(split_file)):
            return _draw(info, data_root, root, protocol, seed, split_file, settings)
        saved = os.path.join(os.path.dirname(split_file), LISTS)
        if not os.path.isdir(saved):
            raise UserError(f"split file {split_file} has no {LISTS}/ folder beside it, so it is no split of --dataset "
                            "folder: remove the file to draw a new split")
        read, classes, names = read_lists(saved, root, None, missing)
    parts, drawn = _shuffled(read, seed, split_file, info.name)
    multi = any((lst.labels.sum(1) != 1).any() for lst in read.values())
    return _data(_entry(info, classes, names, multi, settings), parts, drawn)


def _entry(info, classes, names, multi_label, settings):
    """The generic entry with what the images or lists say and the options change."""
    given = {k: settings[k] for k in ENTRY_OPTIONS if settings.get(k) is not None}
    given.update({k: tuple(given[k]) for k in ("mean", "std") if k in given})  # saved runs hold lists
    return dataclasses.replace(info, classes=classes, multi_label=multi_label, class_names=tuple(names), **given)


def _data(info, parts, drawn, written=None):
    labels = {part: lst.labels if info.multi_label else lst.labels.argmax(1) for part, lst in parts.items()}
    return OwnData(info, *(Part(labels[p], list=parts[p]) for p in ("query", "database", "train")), drawn=drawn,
                   written=written)


# ------------------------------------------------------------------ an image tree

def _visible(folder):
    """(sub-folders, files) of `folder`, sorted, without hidden entries (a leading '.', and the
    __MACOSX folder of zip archives made on a Mac)."""
    entries = sorted(e for e in os.listdir(folder) if not e.startswith(".") and e != "__MACOSX")
    folders = [e for e in entries if os.path.isdir(os.path.join(folder, e))]
    return folders, [e for e in entries if e not in folders]


def scan_tree(root, shown):
    """(class names, image paths, class ids, sources) of the image tree at `root`: one folder
    per class, every file below it (sub-folders included) an image of that class, in sorted
    path order. A top folder with a single folder of folders in it (an archive's wrapping
    folder) is passed through. `shown`: how messages name `root` (the archive itself)."""
    top = root
    folders, files = _visible(top)
    while len(folders) == 1 and not files and _visible(os.path.join(top, folders[0]))[0]:
        top = os.path.join(top, folders[0])
        folders, files = _visible(top)

    def name(path):
        return os.path.join(shown, os.path.relpath(path, root))

    if len(folders) < 2:
        raise UserError(f"{name(top)} holds {len(folders)} class folder{'s' * (len(folders) != 1)} "
                        f"({', '.join(folders) or 'none'}): one folder per class, at least two classes, are needed "
                        "to retrieve by class; add a folder for each class")
    if files:
        print(f"note: {name(top)}: {len(files)} file(s) beside the class folders are not used ({files[0]}, ...)",
              file=sys.stderr)
    paths, labels, source = [], [], []
    for c, cls in enumerate(folders):
        folder = os.path.join(top, cls)
        found = _files_below(folder)
        if not found:
            raise UserError(f"class folder {name(folder)} holds no images: add images to it or remove it")
        for k, path in enumerate(found, 1):
            _check_image(path, name(path), cls)
            paths.append(path)
            labels.append(c)
            source.append((name(folder), k))
    return folders, paths, np.asarray(labels, np.int64), source


def _files_below(folder):
    """Every visible file below `folder`, sorted by path."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(top, f) for f in files if not f.startswith(".")]
    return sorted(found)


def _check_image(path, shown, cls):
    """A file that is not an image stops the load, named, before any training."""
    if "\n" in path:
        raise UserError(f"{shown!r}: a file name with a line break cannot be written to a list file; rename it")
    error = header_error(path)
    if error:
        raise UserError(f"{shown} is not an image ({error}); remove it from class folder {cls} or replace it")


def split_sizes(labels, names, shown, settings):
    """(queries, training images, per class) of the options, checked against the images."""
    per_class = bool(settings.get("per_class"))
    counts = np.bincount(labels, minlength=len(names))
    smallest = int(counts.argmin())
    pool = int(counts[smallest]) if per_class else len(labels)
    queries = settings.get("queries") or max(1, round(pool / 10))
    train = settings.get("train_images") or 0
    if pool <= queries + train:
        where = f"class folder {os.path.join(shown, names[smallest])} has" if per_class else f"{shown} holds"
        raise UserError(f"{where} {pool} images, fewer than the split asks for{' of each class' * per_class}: "
                        f"{queries} queries + {train} training images + at least one database image; lower --queries "
                        "or --train-images, or add images")
    return queries, train, per_class


def _draw(info, data_root, root, protocol, seed, split_file, settings):
    """A new split of the image tree at `root`, saved at once when `split_file` is given, else
    kept with the data for RetrievalData.save_split."""
    if protocol not in ("dpsh", "deephash"):
        raise UserError(f"--protocol {protocol}: a folder's split is dpsh (training images drawn inside the "
                        "database) or deephash (apart from it); it has no official train/test boundary for 'full'")
    names, paths, labels, source = scan_tree(root, data_root)
    queries, train, per_class = split_sizes(labels, names, data_root, settings)
    # all in one group for a draw over all the images; no training images: the database trains (dpsh)
    split = make_split(labels if per_class else np.zeros_like(labels), protocol if train else "dpsh", seed, queries,
                       train)
    whole = ImageList(paths, np.eye(len(names), dtype=np.uint8)[labels], source)  # N x C one-hot
    parts = {part: whole.take(index) for part, index in split.items() if part != "train"}
    parts["train"] = parts["database"] if split["train"] is split["database"] else whole.take(split["train"])
    # the parts come in make_split's seeded order, which the list files keep: positions are the identity
    order = {part: np.arange(len(lst.paths)) for part, lst in parts.items()}
    meta = dict(dataset=info.name, seed=seed, protocol=protocol, queries=queries, train_images=train,
                per_class=per_class, classes=names, order=f"positions in each list file of {LISTS}/ beside this file")
    info = dataclasses.replace(_entry(info, len(names), names, False, settings), query=queries, train=train,
                               per_class=per_class)
    data = _data(info, parts, (order, meta), (root, parts, names))
    if split_file:
        data.save_split(split_file)
        data.drawn = data.written = None
    return data


def write_lists(folder, image_root, parts, names):
    """The parts as MAH-style list files in `folder` (paths relative to `image_root`, one-hot
    rows), no train list where the database trains, and classes.txt."""
    os.makedirs(folder, exist_ok=True)
    for part, lst in parts.items():
        if part != "train" or lst is not parts["database"]:
            write_mah_lists(folder, FILES[part], [os.path.relpath(p, image_root) for p in lst.paths], lst.labels)
    write_text_atomic(os.path.join(folder, NAMES[0]), "".join(f"{n}\n" for n in names))


# ------------------------------------------------------------------ list files

def _label_tokens(style, folder, part):
    """(file, [label tokens of each line]) of a part's list, or None when it has none."""
    if style == "mah":
        image_file, label_file = mah_list_files(folder, part)
        if not os.path.exists(image_file):
            return None
        return label_file, [line.split() for _, line in read_lines(label_file)]
    path = os.path.join(folder, f"{part}.txt")
    if not os.path.exists(path):
        return None
    rows = []
    for _, line in read_lines(path):  # the labels are the integers at the end (a path may hold spaces)
        tokens = line.split()[1:]
        start = len(tokens)
        while start and tokens[start - 1].isdigit():
            start -= 1
        rows.append(tokens[start:])
    return path, rows


def label_columns(found):
    """The number of classes of list files {part: (file, label tokens a line)}: one column is a
    class index (classes: the largest + 1), more are 0/1 columns, as many in every file."""
    counts = {file: len(rows[0]) for file, rows in found.values()}
    first = next(iter(counts))
    for file, count in counts.items():
        if count != counts[first]:
            raise UserError(f"{file} has {count} label columns on its first line, {first} has {counts[first]}; every "
                            "list file needs the same label columns: fix the lines of the odd file")
    if counts[first] > 1:
        return counts[first]
    indices = [int(row[0]) for _, rows in found.values() for row in rows if row and row[0].isdigit()]
    classes = max(indices, default=0) + 1
    if classes < 2:
        raise UserError(f"{', '.join(counts)}: every label is class 0, one class only; retrieval by label needs at "
                        "least two classes: label the images with their classes")
    return classes


def read_lists(folder, image_root, path_prefix, missing):
    """({"database", "test", "train"}: ImageList, classes, class names) of the list files in
    `folder`, MAH's (`<part>_img.txt` + `<part>_label.txt`) or HashNet's (`<part>.txt`); train
    is the database where there is no train list. Names: classes.txt or categories.txt."""
    style = "mah" if os.path.exists(mah_list_files(folder, "database")[0]) else "hashnet"
    found = {part: _label_tokens(style, folder, part) for part in ("database", "test", "train")}
    if not (found["database"] and found["test"]):
        raise UserError(f"no list files in {folder}: expected database_img.txt + database_label.txt and test_img.txt + "
                        "test_label.txt (MAH), or database.txt and test.txt (HashNet), each with train lists if "
                        "training is on other images than the database; see docs/data.md")
    found = {part: f for part, f in found.items() if f}
    for file, rows in found.values():
        if not rows[0]:
            raise UserError(f"{file}: the first line has no labels; give each image its label columns")
    classes = label_columns(found)
    if style == "mah":
        read = {part: read_mah_lists(folder, part, classes, image_root, path_prefix, missing=missing) for part in found}
    else:
        read = {part: read_hashnet_list(os.path.join(folder, f"{part}.txt"), classes, image_root, path_prefix,
                                        missing=missing) for part in found}
    read.setdefault("train", read["database"])
    names = next(([line for _, line in read_lines(os.path.join(folder, n))] for n in NAMES
                  if os.path.exists(os.path.join(folder, n))), [])
    return read, classes, names if len(names) == classes else []
