"""CIFAR-10 from whatever form a user has, as one canonical uint8 array, cached.

Forms read (`--data-root` may point at the folder holding them or at them directly):
1. the official python version: `cifar-10-batches-py/` or `cifar-10-python.tar.gz`;
2. the official Matlab version: `cifar-10-batches-mat/` or `cifar-10-matlab.tar.gz`;
3. the official binary version: `cifar-10-batches-bin/` or `cifar-10-binary.tar.gz`;
4. an image tree `train/<class>/*.{png,jpg}` + `test/<class>/...`, or a .tar/.tar.gz
   of it (../shared/data/cifar10-jpeg.tar.gz is one);
5. the layout written by data/CIFAR-10/prepare.py (`database_img.txt`, ...).

Canonical order: official train batches 1-5 then the test batch; for an image tree,
train then test, classes alphabetically (the official label order), files sorted.
The first 50,000 (`n_train`) are the official training images. Splits (utils.data.splits)
depend only on each class's images in this order, so an image tree whose file names
follow the official order within each class gives the same split as the official
versions; a tree named any other way gives a split as good, but of other images.
(../shared/data/cifar10-jpeg.tar.gz numbers each class 0000, 0001, ...; whether that
is the official order could not be checked here, without an official copy.)
"""
import io
import json
import os
import pickle
import re
import tarfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

from utils.atomic import atomic_write
from utils.cache import default_cache_dir, fingerprint
from utils.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
OFFICIAL = {  # form: (folder inside the archive, archive name, batch file suffix)
    "python": ("cifar-10-batches-py", "cifar-10-python.tar.gz", ""),
    "matlab": ("cifar-10-batches-mat", "cifar-10-matlab.tar.gz", ".mat"),
    "binary": ("cifar-10-batches-bin", "cifar-10-binary.tar.gz", ".bin"),
}
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@dataclass
class ImageArray:
    images: np.ndarray  # N x 32 x 32 x 3 uint8, canonical order
    labels: np.ndarray  # N int64
    n_train: int  # the first n_train are the official training images
    split: dict = None  # {"query", "database", "train"} index arrays when the source fixes a split


# ------------------------------------------------------------------- file access

class _Folder:
    def __init__(self, path):
        self.path = path

    def names(self):
        for top, _, files in os.walk(self.path):
            for f in files:
                yield os.path.relpath(os.path.join(top, f), self.path).replace(os.sep, "/")

    def read(self, name):
        with open(os.path.join(self.path, name), "rb") as f:
            return f.read()


class _Archive:
    """A tar(.gz) read once into memory: CIFAR archives are small (< 200 MB)."""

    def __init__(self, path):
        self.path, self.files = path, {}
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    if member.isfile():
                        self.files[member.name.lstrip("./")] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise UserError(f"{path}: not a readable tar archive ({e}); re-download it or unpack it yourself")

    def names(self):
        return iter(self.files)

    def read(self, name):
        return self.files[name]


def _open(path):
    return _Folder(path) if os.path.isdir(path) else _Archive(path)


# ------------------------------------------------------------------------ forms

def _detect(root):
    """(form, path) of the CIFAR-10 copy at `root`, or a UserError saying what was looked for."""
    if not os.path.exists(root):
        raise UserError(f"CIFAR-10 not found: {root} does not exist; pass --data-root pointing at any "
                        "official CIFAR-10 form (or an image tree), or add --download")
    if os.path.isdir(root):
        entries = set(os.listdir(root))
        for form, (folder, archive, suffix) in OFFICIAL.items():
            if folder in entries:
                return form, os.path.join(root, folder)
            if "data_batch_1" + suffix in entries:
                return form, root
            if archive in entries:
                return form, os.path.join(root, archive)
        if {"train", "test"} <= entries:
            return "tree", root
        if {"database_img.txt", "test_img.txt"} <= entries:
            return "prepared", root
        archives = sorted(e for e in entries if e.endswith((".tar", ".tar.gz", ".tgz")))
        if len(archives) == 1:
            return _detect(os.path.join(root, archives[0]))
        raise UserError(f"no CIFAR-10 in {root}: expected cifar-10-batches-py/-mat/-bin, one of their "
                        ".tar.gz, train/ + test/ image folders, or a prepared layout (database_img.txt)")
    for form, (_, archive, _) in OFFICIAL.items():
        if os.path.basename(root) == archive:
            return form, root
    if root.endswith((".tar", ".tar.gz", ".tgz")):
        return "archive", root  # an official archive under another name, or an image tree
    raise UserError(f"{root}: not a CIFAR-10 folder or archive (.tar/.tar.gz)")


def _batches(files, suffix):
    """Images and labels of the six official batches, in canonical order."""
    names = {n.rsplit("/", 1)[-1]: n for n in files.names()}
    images, labels = [], []
    for batch in BATCHES:
        name = names.get(batch + suffix)
        if name is None:
            raise UserError(f"{files.path}: {batch + suffix} is missing; the CIFAR-10 copy is incomplete")
        try:
            data, label = _decode_batch(files.read(name), suffix)
            data = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        except UserError:
            raise
        except Exception as e:  # any decoding failure means a corrupt file
            raise UserError(f"{files.path}: cannot read {name} ({type(e).__name__}: {e}); the file is corrupt")
        label = np.asarray(label, dtype=np.int64).reshape(-1)
        if len(label) != len(data):
            raise UserError(f"{files.path}: {name} has {len(data)} images but {len(label)} labels")
        images.append(data.transpose(0, 2, 3, 1))  # channel-major rows -> H x W x C
        labels.append(label)
    return np.concatenate(images), np.concatenate(labels), sum(len(x) for x in labels[:5])


def _decode_batch(raw, suffix):
    if suffix == "":
        d = pickle.loads(raw, encoding="bytes")
        return d[b"data"], d[b"labels"]
    if suffix == ".mat":
        import scipy.io  # only the Matlab form needs it

        d = scipy.io.loadmat(io.BytesIO(raw))
        return d["data"], d["labels"]
    records = np.frombuffer(raw, dtype=np.uint8)
    if records.size % 3073:
        raise UserError("binary batch size is not a whole number of 3,073-byte records")
    records = records.reshape(-1, 3073)
    return records[:, 1:], records[:, 0]


def _tree(files):
    """Images and labels of an image tree train/<class>/* + test/<class>/*."""
    pattern = re.compile(r"^(?:.*/)?(train|test)/([^/]+)/([^/]+)$")
    members = {"train": {}, "test": {}}
    for name in files.names():
        m = pattern.match(name)
        if m and m.group(3).lower().endswith(IMAGE_SUFFIXES):
            members[m.group(1)].setdefault(m.group(2), []).append(name)
    classes = sorted(members["train"])
    if not classes or not set(members["test"]) <= set(classes):
        raise UserError(f"{files.path}: expected train/<class>/ and test/<class>/ image folders with the "
                        f"same classes, found train {classes} and test {sorted(members['test'])}")
    images, labels, n_train = [], [], 0
    for part in ("train", "test"):
        for label, cls in enumerate(classes):
            for name in sorted(members[part].get(cls, ())):
                images.append(_decode_image(files, name))
                labels.append(label)
        n_train = n_train or len(labels)
    return np.stack(images), np.asarray(labels, dtype=np.int64), n_train


def _decode_image(files, name):
    try:
        with Image.open(io.BytesIO(files.read(name))) as im:
            array = np.asarray(im.convert("RGB"))
    except Exception as e:
        raise UserError(f"{files.path}: cannot decode image {name} ({type(e).__name__}); replace the file")
    if array.shape != (32, 32, 3):
        raise UserError(f"{files.path}: image {name} is {array.shape[1]}x{array.shape[0]}, CIFAR-10 images are 32x32")
    return array


def _prepared(root):
    """The layout of data/CIFAR-10/prepare.py: images named by canonical index, MAH-style split lists."""
    from utils.data.listfiles import read_mah_lists

    parts = {}
    for part in ("database", "test", "train"):
        if part != "train" or os.path.exists(os.path.join(root, "train_img.txt")):
            listed = read_mah_lists(root, part, classes=10)
            index = np.array([int(os.path.splitext(os.path.basename(p))[0]) for p in listed.paths])
            parts[part] = (listed, index)
    (db, db_index), (test, test_index) = parts["database"], parts["test"]
    total = len(db_index) + len(test_index)
    if not np.array_equal(np.sort(np.concatenate([db_index, test_index])), np.arange(total)):
        raise UserError(f"{root}: database_img and test_img must together hold images 00000..{total - 1:05d}")
    images = np.zeros((total, 32, 32, 3), np.uint8)
    labels = np.zeros(total, np.int64)
    folder = _Folder(root)
    for listed, index in ((db, db_index), (test, test_index)):
        for path, i in zip(listed.paths, index):
            images[i] = _decode_image(folder, os.path.relpath(path, root))
        labels[index] = listed.labels.argmax(1)
    split = {"query": test_index, "database": db_index, "train": parts.get("train", parts["database"])[1]}
    try:
        with open(os.path.join(root, "prepared.json")) as f:
            n_train = int(json.load(f)["n_train"])
    except (OSError, ValueError, KeyError):
        raise UserError(f"{root}: prepared.json is missing or unreadable; re-run data/CIFAR-10/prepare.py")
    return images, labels, n_train, split


# --------------------------------------------------------------------- public API

def load_cifar10(root, cache_dir=None, download=False):
    """CIFAR-10 at `root` in any supported form -> ImageArray (decoded once, then cached)."""
    if download and not os.path.exists(os.path.join(root, OFFICIAL["python"][0])):
        _download(root)
    form, path = _detect(root)
    cache_dir = cache_dir or default_cache_dir()
    cached = os.path.join(cache_dir, f"cifar10-{form}-{fingerprint(path)}.npz")
    if os.path.exists(cached):
        with np.load(cached) as z:
            split = {k[6:]: z[k] for k in z.files if k.startswith("split_")} or None
            return ImageArray(z["images"], z["labels"], int(z["n_train"]), split)
    split = None
    if form == "prepared":
        images, labels, n_train, split = _prepared(path)
    elif form == "tree":
        images, labels, n_train = _tree(_open(path))
    else:
        files = _open(path)
        if form == "archive":  # look inside for an official folder, else an image tree
            names = {n.split("/")[0] for n in files.names()}
            form = next((f for f, (folder, _, _) in OFFICIAL.items() if folder in names), "tree")
        if form == "tree":
            images, labels, n_train = _tree(files)
        else:
            images, labels, n_train = _batches(files, OFFICIAL[form][2])
    if labels.min() < 0 or labels.max() > 9:
        raise UserError(f"{path}: labels must be 0..9, found {labels.min()}..{labels.max()}")
    os.makedirs(cache_dir, exist_ok=True)
    extra = {f"split_{k}": v for k, v in (split or {}).items()}
    atomic_write(cached, lambda f: np.savez(f, images=images, labels=labels, n_train=n_train, **extra))
    return ImageArray(images, labels, n_train, split)


def _download(root):
    import torchvision

    try:
        torchvision.datasets.CIFAR10(root=root, train=True, download=True)
    except Exception as e:
        raise UserError(f"could not download CIFAR-10 into {root} ({type(e).__name__}; no network?): put "
                        "cifar-10-python.tar.gz there yourself, or point --data-root at any supported form")
