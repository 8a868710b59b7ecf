"""data/FLICKR/prepare.py and data/NUS-WIDE/prepare.py, run as a user runs them, on tiny
fake copies of the official distributions (same file names and formats, few images).

The list files are read back with utils.data.listfiles.read_mah_lists, the reader training
uses, and compared with the labels the fakes were generated from.
"""
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from utils.data.listfiles import read_mah_lists

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLICKR_SCRIPT = os.path.join(REPO, "data", "FLICKR", "prepare.py")
NUS_SCRIPT = os.path.join(REPO, "data", "NUS-WIDE", "prepare.py")
LIST_FILES = ("test_img.txt", "test_label.txt", "database_img.txt", "database_label.txt")

# the annotation files of mirflickr25k_annotations_v080: 24 concepts, 14 of them also as _r1
FLICKR_CONCEPTS = ["animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
                   "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
                   "structures", "sunset", "transport", "tree", "water"]
FLICKR_R1 = ["baby", "bird", "car", "clouds", "dog", "female", "flower", "male", "night", "people",
             "portrait", "river", "sea", "tree"]
N_FLICKR = 60

# NUS-WIDE fake: (concept, images carrying it); with --concepts-kept 3 the kept concepts are
# beach (40), buildings (30) and clouds (30): dancing also has 30 but comes later in the list
NUS_CONCEPTS = [("animal", 10), ("beach", 40), ("buildings", 30), ("clouds", 30), ("dancing", 30), ("sky", 5)]
NUS_KEPT = ["beach", "buildings", "clouds"]
N_NUS = 150


def prepare(script, *args):
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def check_ok(result):
    assert result.returncode == 0, result.stderr


def check_user_error(result, *words):
    """Exit status 2 and one line on stderr naming the problem (no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def list_bytes(out):
    return {name: (out / name).read_bytes() for name in LIST_FILES}


# ---------------------------------------------------------------------------- MIRFlickr

@pytest.fixture
def flickr(tmp_path):
    """<tmp>/src/mirflickr/im1.jpg ... + <tmp>/src/mirflickr25k_annotations_v080/*.txt ->
    (src folder, column names, N x 38 labels)."""
    src = tmp_path / "src"
    images = src / "mirflickr"
    images.mkdir(parents=True)
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(jpeg, "JPEG")
    for k in range(1, N_FLICKR + 1):
        (images / f"im{k}.jpg").write_bytes(jpeg.getvalue())
    annotations = src / "mirflickr25k_annotations_v080"
    annotations.mkdir()
    (annotations / "README.txt").write_text("MIRFLICKR-25000 annotations\n")
    files = sorted([f"{c}.txt" for c in FLICKR_CONCEPTS] + [f"{c}_r1.txt" for c in FLICKR_R1])
    labels = (np.random.default_rng(1).random((N_FLICKR, len(files))) < 0.15).astype(np.uint8)
    labels[:5] = 0  # unlabelled images, which stay in the lists
    for column, name in enumerate(files):
        newline = "\r\n" if column % 2 else "\n"  # both line endings must parse
        numbers = np.flatnonzero(labels[:, column]) + 1
        (annotations / name).write_bytes("".join(f"{k}{newline}" for k in numbers).encode())
    return src, [f[:-len(".txt")] for f in files], labels


def read_flickr(out, src):
    """{split: (0-based image indices, labels)} from the list files in `out`."""
    result = {}
    for split in ("test", "database"):
        lists = read_mah_lists(str(out), split, 38, image_root=str(src))  # checks that every image exists
        indices = [int(os.path.basename(p)[len("im"):-len(".jpg")]) - 1 for p in lists.paths]
        result[split] = (np.array(indices), lists.labels)
    return result


def test_flickr_lists(flickr, tmp_path):
    src, columns, labels = flickr
    out = tmp_path / "out"
    check_ok(prepare(FLICKR_SCRIPT, "--split", "seeded", "--root", src, "--queries", 12, "--out", out))
    lists = read_flickr(out, src)
    query, database = lists["test"][0], lists["database"][0]
    assert len(query) == 12 and len(database) == N_FLICKR - 12
    assert not set(query) & set(database)
    assert sorted(np.concatenate([query, database])) == list(range(N_FLICKR))  # unlabelled ones kept
    for indices, rows in lists.values():
        np.testing.assert_array_equal(rows, labels[indices])
    first = (out / "test_img.txt").read_text().splitlines()[0]
    assert first.startswith("mirflickr/im") and first.endswith(".jpg")  # relative to --root
    record = json.loads((out / "prepared.json").read_text())
    assert record["columns"] == columns and len(columns) == 38
    assert (record["seed"], record["images"], record["queries"], record["database"]) == (0, N_FLICKR, 12, 48)
    assert record["unlabelled_queries"] + record["unlabelled_database"] == 5
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_flickr_seed_and_root_forms(flickr, tmp_path):
    src, _, _ = flickr
    runs = {"a": (src, 0), "b": (src, 0), "inner": (src / "mirflickr", 0), "other": (src, 1)}
    for name, (root, seed) in runs.items():
        check_ok(prepare(FLICKR_SCRIPT, "--split", "seeded", "--root", root, "--queries", 12, "--seed", seed,
                         "--out", tmp_path / name))
    assert list_bytes(tmp_path / "a") == list_bytes(tmp_path / "b")
    # --root at mirflickr/ itself: same lists, annotations found beside it
    assert list_bytes(tmp_path / "inner") == list_bytes(tmp_path / "a")
    assert (tmp_path / "other" / "test_img.txt").read_text() != (tmp_path / "a" / "test_img.txt").read_text()


def test_flickr_annotation_locations(flickr, tmp_path):
    src, _, _ = flickr
    check_ok(prepare(FLICKR_SCRIPT, "--split", "seeded", "--root", src, "--queries", 12, "--out", tmp_path / "default"))
    moved = tmp_path / "elsewhere"
    shutil.move(src / "mirflickr25k_annotations_v080", moved)
    check_ok(prepare(FLICKR_SCRIPT, "--split", "seeded", "--root", src, "--annotations", moved, "--queries", 12,
                     "--out", tmp_path / "option"))
    for f in os.listdir(moved):  # the .txt files loose in --root
        shutil.move(moved / f, src / f)
    check_ok(prepare(FLICKR_SCRIPT, "--split", "seeded", "--root", src, "--queries", 12, "--out", tmp_path / "loose"))
    assert list_bytes(tmp_path / "option") == list_bytes(tmp_path / "default") == list_bytes(tmp_path / "loose")


def break_line(src):
    (src / "mirflickr25k_annotations_v080" / "dog.txt").write_text("3\n7x\n9\n")


def out_of_range(src):
    (src / "mirflickr25k_annotations_v080" / "sky.txt").write_text(f"3\n{N_FLICKR + 1}\n")


def drop_file(src):
    (src / "mirflickr25k_annotations_v080" / "tree_r1.txt").unlink()


def drop_image(src):
    (src / "mirflickr" / "im17.jpg").unlink()


@pytest.mark.parametrize("damage, words", [
    (None, ["not a folder"]),
    (break_line, ["dog.txt:2", "'7x'"]),
    (out_of_range, ["sky.txt:2", f"1..{N_FLICKR}"]),
    (drop_file, ["37 annotation files"]),
    (drop_image, ["im17.jpg"]),
])
def test_flickr_bad_input(flickr, tmp_path, damage, words):
    src, _, _ = flickr
    root = src if damage else tmp_path / "missing"
    if damage:
        damage(src)
    check_user_error(prepare(FLICKR_SCRIPT, "--split", "seeded", "--root", root, "--queries", 12,
                             "--out", tmp_path / "out"), *words)
    assert not (tmp_path / "out" / "test_img.txt").exists()


def test_flickr_too_many_queries(flickr, tmp_path):
    src, _, _ = flickr
    check_user_error(prepare(FLICKR_SCRIPT, "--split", "seeded", "--root", src, "--queries", N_FLICKR,
                             "--out", tmp_path), "--queries")


# ---------------------------------------------------------------------------- NUS-WIDE

@pytest.fixture
def nuswide(tmp_path):
    """<tmp>/src/{ImageList/Imagelist.txt, Concepts81.txt, Groundtruth/AllLabels/Labels_*.txt}
    -> (src folder, relative image paths, N x 6 labels)."""
    src = tmp_path / "src"
    (src / "ImageList").mkdir(parents=True)
    (src / "Groundtruth" / "AllLabels").mkdir(parents=True)
    rng = np.random.default_rng(2)
    folders = rng.choice(["actor", "airport", "beach", "city"], N_NUS)
    windows = [f"C:\\ImageData\\Flickr\\{d}\\{i:04d}_{rng.integers(10**9, 10**10)}.jpg" for i, d in enumerate(folders)]
    (src / "ImageList" / "Imagelist.txt").write_bytes("".join(p + "\r\n" for p in windows).encode())
    (src / "Concepts81.txt").write_text("".join(c + "\n" for c, _ in NUS_CONCEPTS))
    labels = np.zeros((N_NUS, len(NUS_CONCEPTS)), np.uint8)
    for column, (concept, count) in enumerate(NUS_CONCEPTS):
        labels[rng.choice(N_NUS, count, replace=False), column] = 1
        (src / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt").write_text(
            "".join(f"{v}\n" for v in labels[:, column]))
    relative = [p.split("ImageData\\")[1].replace("\\", "/") for p in windows]
    return src, relative, labels


def read_nus(out, src, relative):
    """{split: (indices into the Imagelist, labels)} from the list files in `out`."""
    index = {os.path.join(str(src), p): i for i, p in enumerate(relative)}
    result = {}
    for split in ("test", "database"):
        lists = read_mah_lists(str(out), split, len(NUS_KEPT), image_root=str(src), check_exists=False)
        result[split] = (np.array([index[p] for p in lists.paths]), lists.labels)
    return result


def nus_prepare(src, out, *args):
    return prepare(NUS_SCRIPT, "--root", src, "--concepts-kept", 3, "--queries-per-concept", 4, "--out", out, *args)


def test_nuswide_lists(nuswide, tmp_path):
    src, relative, labels = nuswide
    out = tmp_path / "out"
    check_ok(nus_prepare(src, out))
    names = [c for c, _ in NUS_CONCEPTS]
    kept_columns = [names.index(c) for c in NUS_KEPT]
    expected = labels[:, kept_columns]
    labelled = np.flatnonzero(expected.any(1))
    lists = read_nus(out, src, relative)
    query, database = lists["test"][0], lists["database"][0]
    assert len(query) == 3 * 4 and len(database) == len(labelled) - 12
    assert not set(query) & set(database)
    assert sorted(np.concatenate([query, database])) == labelled.tolist()  # exactly the labelled images
    for indices, rows in lists.values():
        np.testing.assert_array_equal(rows, expected[indices])
    # each kept concept got its 4 queries (a query drawn for one concept may carry others too)
    assert (lists["test"][1].sum(0) >= 4).all()
    record = json.loads((out / "prepared.json").read_text())
    assert record["concepts"] == NUS_KEPT
    assert record["frequencies"] == dict(NUS_CONCEPTS)
    assert (record["seed"], record["images_listed"], record["images_kept"]) == (0, N_NUS, len(labelled))
    assert (record["queries"], record["database"]) == (12, len(labelled) - 12)
    assert (out / "test_img.txt").read_text().startswith("Flickr/")


def test_nuswide_seed_and_options(nuswide, tmp_path):
    src, _, _ = nuswide
    for name, seed in (("a", 0), ("b", 0), ("other", 1)):
        check_ok(nus_prepare(src, tmp_path / name, "--seed", seed))
    assert list_bytes(tmp_path / "a") == list_bytes(tmp_path / "b")
    assert (tmp_path / "other" / "test_img.txt").read_text() != (tmp_path / "a" / "test_img.txt").read_text()
    moved = tmp_path / "moved"
    shutil.move(src / "ImageList", moved / "lists")
    shutil.move(src / "Groundtruth" / "AllLabels", moved / "labels")
    shutil.move(src / "Concepts81.txt", moved / "concepts.txt")
    check_ok(nus_prepare(src, tmp_path / "options", "--image-list", moved / "lists" / "Imagelist.txt",
                         "--concepts", moved / "concepts.txt", "--labels-dir", moved / "labels"))
    assert list_bytes(tmp_path / "options") == list_bytes(tmp_path / "a")


def short_label_file(src):
    path = src / "Groundtruth" / "AllLabels" / "Labels_clouds.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))


def bad_label_value(src):
    path = src / "Groundtruth" / "AllLabels" / "Labels_beach.txt"
    lines = path.read_text().splitlines()
    lines[6] = "2"
    path.write_text("\n".join(lines) + "\n")


def missing_label_file(src):
    (src / "Groundtruth" / "AllLabels" / "Labels_sky.txt").unlink()


@pytest.mark.parametrize("damage, args, words", [
    (None, [], ["not a folder"]),
    (short_label_file, [], ["Labels_clouds.txt", f"{N_NUS - 1} lines", str(N_NUS)]),
    (bad_label_value, [], ["Labels_beach.txt:7", "'2'"]),
    (missing_label_file, [], ["Labels_sky.txt", "not found"]),
    (None, ["--concepts-kept", 7], ["--concepts-kept 7"]),
    (None, ["--queries-per-concept", 40], ["lower --queries-per-concept"]),
])
def test_nuswide_bad_input(nuswide, tmp_path, damage, args, words):
    src, _, _ = nuswide
    root = tmp_path / "missing" if damage is None and not args else src
    if damage:
        damage(src)
    check_user_error(nus_prepare(root, tmp_path / "out", *args), *words)
    assert not (tmp_path / "out" / "test_img.txt").exists()
