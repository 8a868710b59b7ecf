"""Image list files, in the two formats of the original code.

- MAH style: `<split>_img.txt` (one image path a line) beside `<split>_label.txt`
  (one class index, or one multi-hot row of 0/1, a line); the lists published with
  the original code name the image list `<split>_image.txt`.
- HashNet/MMHH style: one file per split (train.txt, database.txt, test.txt), each
  line `path l1 ... lC` (multi-hot), or `path c` (one token: a class index).

Relative paths are resolved against `image_root`; `path_prefix="OLD=NEW"` rewrites
absolute paths of old lists (e.g. `/home/someone/data/=/data/`). Every problem is
reported as a UserError naming the list file and line.
"""
import os
import sys
from dataclasses import dataclass

import numpy as np
from PIL import Image

from utils.atomic import atomic_write
from utils.errors import UserError

# the folder of the FLICKR split published with the original MAH code, beside the images in the shared archive
PUBLISHED = "mah-original-lists"


@dataclass
class ImageList:
    paths: list  # resolved image paths
    labels: np.ndarray  # N x C uint8 multi-hot (single-label lists become one-hot)
    source: list  # (list file, line number) of each image, for error messages
    dropped: int = 0  # listed images left out because their files are missing

    def take(self, order):
        """The images at positions `order`, in that order."""
        return ImageList([self.paths[i] for i in order], self.labels[order], [self.source[i] for i in order],
                         self.dropped)


def parse_prefix(path_prefix):
    """'OLD=NEW' -> (OLD, NEW); None -> None."""
    if not path_prefix:
        return None
    if "=" not in path_prefix:
        raise UserError(f"--path-prefix must look like OLD=NEW, got {path_prefix!r}")
    old, new = path_prefix.split("=", 1)
    return old, new


def _resolve(path, image_root, prefix):
    if prefix and path.startswith(prefix[0]):
        path = prefix[1] + path[len(prefix[0]):]
    return path if os.path.isabs(path) else os.path.join(image_root, path)


def read_lines(path):
    """(line number, stripped text) of the non-empty lines of a UTF-8 list file (a byte-order
    mark is allowed); a line that is not UTF-8 is a UserError naming file and line."""
    if not os.path.exists(path):
        raise UserError(f"list file {path} does not exist; check --data-root (see data/README.md)")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UserError(f"list file {path} cannot be read ({e.strerror}); check its permissions") from None
    lines = []
    for i, line in enumerate(raw.removeprefix(b"\xef\xbb\xbf").splitlines(), 1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise UserError(f"{path}:{i}: byte 0x{line[e.start]:02x} is not UTF-8; save the list file as UTF-8") \
                from None
        if text:
            lines.append((i, text))
    if not lines:
        raise UserError(f"list file {path} lists no images; check that it is the right file")
    return lines


def _is_number(token):
    try:
        float(token)
    except ValueError:
        return False
    return True


def _label_row(tokens, classes, where):
    """One label line's tokens -> multi-hot row of `classes`."""
    try:
        values = [int(t) for t in tokens]
    except ValueError:
        raise UserError(f"{where}: labels must be integers, got {' '.join(tokens)!r}")
    row = np.zeros(classes, np.uint8)
    if len(values) == 1:
        if not 0 <= values[0] < classes:
            raise UserError(f"{where}: class index {values[0]} is outside 0..{classes - 1}")
        row[values[0]] = 1
    elif len(values) == classes:
        if any(v not in (0, 1) for v in values):
            raise UserError(f"{where}: multi-hot labels must be 0 or 1")
        row[:] = values
    else:
        raise UserError(f"{where}: {len(values)} label columns, but this dataset has {classes} classes "
                        f"(a class index or {classes} 0/1 columns expected)")
    return row


def _finish(paths, rows, source, check_exists, missing="error"):
    """The ImageList; with check_exists, listed images that are absent are an error naming how
    many and the first (missing="error"), or are left out with a note (missing="drop")."""
    _listed_once(paths, source)
    listed = ImageList(paths, np.stack(rows), source)
    if not check_exists:
        return listed
    absent = [i for i, path in enumerate(paths) if not os.path.isfile(path)]
    if not absent:
        return _readable(listed)
    list_file, line = source[absent[0]]
    if missing == "error":
        raise UserError(f"{list_file}:{line}: image {paths[absent[0]]} not found, and {len(absent)} of the "
                        f"{len(paths)} images listed there are missing; fix --image-root (or --path-prefix OLD=NEW for "
                        "absolute paths), or pass --missing-images drop to leave the missing ones out")
    if len(absent) == len(paths):  # nothing would be left to train on, query or search
        raise UserError(f"{list_file}: all {len(paths)} images listed there are missing, and --missing-images drop "
                        f"would leave {part_of(list_file)} empty (the first: {paths[absent[0]]}); fix --image-root "
                        "(or --path-prefix OLD=NEW for absolute paths)")
    print(f"note: {list_file}: {len(absent)} of {len(paths)} listed images are missing and left out "
          "(--missing-images drop)", file=sys.stderr)
    kept = listed.take(np.setdiff1d(np.arange(len(paths)), absent))
    kept.dropped = len(absent)
    return _readable(kept)


def part_of(list_file):
    """What a list file holds, in words, from its name: test.txt, test_img.txt -> "the query set"."""
    stem = os.path.basename(list_file).split(".")[0].split("_")[0]
    return {"test": "the query set", "database": "the database", "train": "the training set"}.get(stem, "its part")


def _key(path):
    """The name two list lines give one image by (`img/a.png` and `./img/a.png` are one)."""
    return os.path.normpath(path)


def _listed_once(paths, source):
    """A list names each image once: an image listed twice would be one item counted twice (a
    query that is relevant to itself, a database item that takes two places in every ranking).
    None of the lists published for the supported data sets does so."""
    first = {}
    for i, path in enumerate(paths):
        j = first.setdefault(_key(path), i)
        if j != i:
            raise UserError(f"{source[j][0]}:{source[j][1]} and {source[i][0]}:{source[i][1]} both list image "
                            f"{path}; remove one of the two lines")


def overlap_note(query, database, published=""):
    """One line when queries (ImageList `query`) are also database items, or None. Each such
    query finds itself at distance 0 and counts itself relevant, which raises its MAP; some
    published lists do it (`published`: which, from the data set table), any other overlap is
    most likely lists drawn from one pool twice."""
    listed = {_key(path) for path in database.paths}
    shared = sum(_key(path) in listed for path in query.paths)
    if not shared:
        return None
    said = f"{shared} of the {len(query.paths)} queries ({query.source[0][0]}) are also in the database " \
           f"({database.source[0][0]})"
    if published:
        return f"notice: {said}, as in {published}; each finds itself at distance 0, which raises MAP"
    return (f"warning: {said}: each finds itself at distance 0, which raises MAP; remove them from one list "
            "unless your protocol means queries to be database items")


def _readable(listed):
    """The list, once every image's header has been read: a file that is not an image (empty,
    cut short, another format) stops the run before training, not when a batch reaches it."""
    for path, (list_file, line) in zip(listed.paths, listed.source):
        error = header_error(path)
        if error:
            raise UserError(f"{list_file}:{line}: image {path} cannot be read ({error}); replace the "
                            "file or drop its line")
    return listed


def header_error(path):
    """None when PIL reads the image header of `path`, else the name of what it raised."""
    try:
        with Image.open(path):
            return None
    except Exception as e:  # PIL raises OSError subclasses and, for some broken headers, others
        return type(e).__name__


def read_hashnet_list(list_file, classes, image_root=None, path_prefix=None, check_exists=True, missing="error"):
    """A HashNet/MMHH list file -> ImageList."""
    image_root = image_root or os.path.dirname(os.path.abspath(list_file))
    prefix = parse_prefix(path_prefix)
    paths, rows, source = [], [], []
    for line_no, line in read_lines(list_file):
        where = f"{list_file}:{line_no}"
        tokens = line.split()
        if len(tokens) < 2:
            raise UserError(f"{where}: expected 'path label ...', got {line!r}")
        if not _is_number(tokens[1]):  # labels are numbers: a word right after the path is more of the path
            raise UserError(f"{where}: the image path has a space ({line!r}), and this format separates the path "
                            "from its labels by spaces: rename the file, or use MAH-style lists (one path a line)")
        rows.append(_label_row(tokens[1:], classes, where))
        paths.append(_resolve(tokens[0], image_root, prefix))
        source.append((list_file, line_no))
    return _finish(paths, rows, source, check_exists, missing)


def mah_list_files(folder, split):
    """(image list, label list) of `split` in `folder`: `<split>_img.txt` + `<split>_label.txt`,
    or the names of the lists published with the original code, `<split>_image.txt` + ..."""
    for image_name in ("img", "image"):
        img_file = os.path.join(folder, f"{split}_{image_name}.txt")
        if os.path.exists(img_file):
            return img_file, os.path.join(folder, f"{split}_label.txt")
    return os.path.join(folder, f"{split}_img.txt"), os.path.join(folder, f"{split}_label.txt")


def read_mah_lists(folder, split, classes, image_root=None, path_prefix=None, check_exists=True, missing="error",
                   columns=()):
    """`<folder>/<split>_img.txt` (or `_image.txt`) + `<split>_label.txt` -> ImageList.
    columns: label column j of the file is column columns[j] of the result (a permutation)."""
    img_file, label_file = mah_list_files(folder, split)
    images, labels = read_lines(img_file), read_lines(label_file)
    if len(images) != len(labels):
        raise UserError(f"{img_file} lists {len(images)} images but {label_file} has {len(labels)} label lines")
    image_root = image_root or folder
    prefix = parse_prefix(path_prefix)
    paths, rows, source = [], [], []
    for (line_no, path), (label_no, label) in zip(images, labels):  # a whole line is a path, spaces included
        row = _label_row(label.split(), classes, f"{label_file}:{label_no}")
        if columns:
            row[list(columns)] = row.copy()
        rows.append(row)
        paths.append(_resolve(path, image_root, prefix))
        source.append((img_file, line_no))
    return _finish(paths, rows, source, check_exists, missing)


def write_text_atomic(path, text):
    """Write `text` to `path` atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_mah_lists(folder, split, paths, labels):
    """Write `<split>_img.txt` and `<split>_label.txt`: class ids (n,) or 0/1 rows (n x C)."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        label_text = "".join(f"{c}\n" for c in labels.tolist())
    else:  # 'l1 l2 ... lC' lines built as one byte array, not n * C Python strings
        chars = np.full((len(labels), 2 * labels.shape[1]), ord(" "), np.uint8)
        chars[:, 0::2] = labels + ord("0")
        chars[:, -1] = ord("\n")
        label_text = chars.tobytes().decode("ascii")
    write_text_atomic(os.path.join(folder, f"{split}_img.txt"), "".join(p + "\n" for p in paths))
    write_text_atomic(os.path.join(folder, f"{split}_label.txt"), label_text)
