"""A user's own images with no code edit: --dataset folder (class folders, a seeded split saved as
list files in the run) and --dataset lists (list files with any number of label columns), end to
end through a MAH script, train_mmhh.py + test_mmhh.py and the index, and each bad input as one
line naming the file and the fix."""
import json
import os
import runpy
import shutil
import sys
import tarfile
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

import numpy as np
import pytest
from PIL import Image

from utils.data import images
from utils.data.loader import load_data
from utils.errors import UserError
from utils.mah import args as mah_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = os.path.join(os.path.dirname(REPO), "shared", "data", "cifar10-jpeg.tar.gz")
CLASSES = ("airplane", "automobile", "bird")  # the first three class folders of the archive's test/
PER_CLASS = 20


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Class folders of real CIFAR-10 JPEGs: the first 20 test images of three classes."""
    if not os.path.exists(CIFAR):
        pytest.skip("../shared/data/cifar10-jpeg.tar.gz is absent (the real CIFAR-10 export)")
    root = tmp_path_factory.mktemp("own") / "photos"
    taken = {}
    with tarfile.open(CIFAR) as tar:
        for member in tar:  # members come class by class: stop after the third class
            parts = member.name.split("/")
            if len(parts) != 3 or parts[0] != "test" or not member.isfile():
                continue
            if parts[1] not in CLASSES:
                if len(taken) == len(CLASSES):
                    break
                continue
            if taken.setdefault(parts[1], 0) < PER_CLASS:
                os.makedirs(root / parts[1], exist_ok=True)
                (root / parts[1] / parts[2]).write_bytes(tar.extractfile(member).read())
                taken[parts[1]] += 1
    assert taken == dict.fromkeys(CLASSES, PER_CLASS)
    return root


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHING_CACHE", str(tmp_path / "cache"))  # archives unpack here, not into the repository


def entry(script, *argv, monkeypatch):
    """Run `script`.py (or `python -m script` for a module) as its command line would, in this
    process: (exit status, stderr lines)."""
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *map(str, argv)])
    code, err = 0, StringIO()
    with redirect_stdout(StringIO()), redirect_stderr(err):
        try:
            if "." in script:
                runpy.run_module(script, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(os.path.join(REPO, f"{script}.py"), run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, [line for line in err.getvalue().splitlines() if line.strip()]


def files_of(root):
    """{relative path: class folder} of every file of a class-folder tree, walked here."""
    return {os.path.relpath(os.path.join(top, f), root): os.path.relpath(top, root).split(os.sep)[0]
            for top, _, files in os.walk(root) for f in files}


def lines(path):
    return open(path).read().splitlines()


# ------------------------------------------------------------------ the folder's split

def test_folder_split_has_the_sizes_asked_and_the_folders_labels(tree, tmp_path):
    """Per class under deephash: 2 queries, 5 training images and the other 13 of each class's 20
    as database, disjoint, covering the tree, each image labelled by its folder (classes sorted).
    Catches sizes taken in total instead of per class, training images left in the database,
    labels from another order than the folders', or images lost or counted twice."""
    data = load_data("folder", str(tree), protocol="deephash", seed=3,
                     settings=dict(queries=2, train_images=5, per_class=True))
    truth = files_of(tree)
    got = {part: [os.path.relpath(p, tree) for p in getattr(data, part).list.paths]
           for part in ("query", "database", "train")}
    for part, per_class in (("query", 2), ("train", 5), ("database", 13)):
        assert sorted(truth[p] for p in got[part]) == sorted(CLASSES * per_class), part
        np.testing.assert_array_equal(getattr(data, part).labels, [CLASSES.index(truth[p]) for p in got[part]])
    assert sorted(sum(got.values(), [])) == sorted(truth)
    assert (data.info.classes, data.info.multi_label, data.info.class_names) == (3, False, CLASSES)
    # dpsh draws the training images inside the database; over all images, 7 queries in total
    dpsh = load_data("folder", str(tree), seed=3, settings=dict(queries=7, train_images=5))
    assert len(dpsh.query.labels) == 7 and len(dpsh.database.labels) == 53
    assert set(dpsh.train.list.paths) < set(dpsh.database.list.paths) and len(dpsh.train.labels) == 5
    # by default a tenth of the images are queries and every database image trains
    plain = load_data("folder", str(tree), seed=3)
    assert len(plain.query.labels) == 6 and plain.train.list.paths == plain.database.list.paths


def test_folder_split_is_seeded_saved_and_reread(tree, tmp_path):
    """The split comes from the seed alone, is written as list files beside split.json, and a
    load that finds split.json reads the same parts in the same order; `--dataset lists` on the
    saved lists gives the same parts. Catches an unseeded draw, lists out of step with the split
    used, or a re-load that draws anew."""
    settings = dict(queries=2, train_images=4, per_class=True)
    split_file = tmp_path / "run" / "split.json"
    os.makedirs(split_file.parent)
    first = load_data("folder", str(tree), protocol="deephash", seed=5, settings=settings)
    again = load_data("folder", str(tree), protocol="deephash", seed=5, settings=settings)
    other = load_data("folder", str(tree), protocol="deephash", seed=6, settings=settings)
    assert first.query.list.paths == again.query.list.paths and first.train.list.paths == again.train.list.paths
    assert set(first.query.list.paths) != set(other.query.list.paths)
    first.save_split(str(split_file))
    saved = tmp_path / "run" / "lists"
    for part, name in (("query", "test"), ("database", "database"), ("train", "train")):
        lst = getattr(first, part).list
        assert lines(saved / f"{name}_img.txt") == [os.path.relpath(p, tree) for p in lst.paths]
        rows = np.loadtxt(saved / f"{name}_label.txt", dtype=int, ndmin=2)
        np.testing.assert_array_equal(rows, np.eye(3, dtype=int)[getattr(first, part).labels])
    assert lines(saved / "classes.txt") == list(CLASSES)
    reread = load_data("folder", str(tree), protocol="deephash", seed=99, split_file=str(split_file))
    for part in ("query", "database", "train"):
        assert getattr(reread, part).list.paths == getattr(first, part).list.paths
        np.testing.assert_array_equal(getattr(reread, part).labels, getattr(first, part).labels)
    reused = load_data("lists", str(saved), image_root=str(tree), seed=1)
    for part in ("query", "database", "train"):
        assert sorted(getattr(reused, part).list.paths) == sorted(getattr(first, part).list.paths)
    assert reused.info.class_names == CLASSES and not reused.info.multi_label


# ------------------------------------------------------------------ end to end

def test_mah_script_trains_on_a_zipped_folder_and_the_index_takes_the_run(tree, tmp_path, monkeypatch):
    """A CIFAR-10 script with --dataset folder on a .zip whose class folders sit in a wrapping
    folder trains and evaluates; `python -m utils.index build --from-run` reads the run's saved
    split back and indexes its database, named by path inside the archive, with the run's
    --mean. Catches a script that ignores --dataset, an archive not unpacked or its wrapping
    folder taken for a class, a run the index cannot rebuild from its saved arguments, and an
    index that normalises with the table's default instead of the run's --mean."""
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in files_of(tree):
            z.write(tree / name, f"photos/{name}")
    out = tmp_path / "run"
    code, err = entry("flat_CIFAR-10", "--dataset", "folder", "--data-root", archive, "--preset", "smoke", "--gpu",
                      "cpu", "--workers", 0, "--bits", 4, "--queries", 3, "--per-class", "--mean", "0.5,0.4,0.3",
                      "--output-dir", out, monkeypatch=monkeypatch)
    assert code == 0, err
    record = json.load(open(out / "results" / "folder_MAH-flat_4bits.json"))
    assert 0 < record["metrics"]["map_tie_aware"] <= 1 and record["args"]["dataset"] == "folder"
    assert len(lines(out / "lists" / "test_img.txt")) == 9 and len(lines(out / "lists" / "database_img.txt")) == 51
    code, err = entry("utils.index", "build", "--model", out, "--from-run", "--out", tmp_path / "idx", "--gpu", "cpu",
                      monkeypatch=monkeypatch)
    assert code in (0, None), err
    assert json.load(open(tmp_path / "idx" / "manifest.json"))["preprocessing"]["mean"] == [0.5, 0.4, 0.3]
    items = json.load(open(tmp_path / "idx" / "items.json"))
    assert items == lines(out / "lists" / "database_img.txt")
    assert set(items) < set(zipfile.ZipFile(archive).namelist())


def test_mmhh_trains_and_tests_on_a_folder_archive(tree, tmp_path, monkeypatch):
    """train_mmhh.py --s_dataset folder on a .tar.gz trains on its training images apart from the
    database (deephash, MMHH's default), tests over the whole database (R: -1), and test_mmhh.py,
    after an image was added to the archive, re-reads the saved split and repeats the number.
    Catches a test on another split than the training run's, or a default R other than the
    whole database."""
    archive = tmp_path / "photos.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=".")
    paths = ["--log_dir", tmp_path / "log", "--snap_path", tmp_path / "snap", "--test_output_dir", tmp_path / "out"]
    code, err = entry("train_mmhh", "--s_dataset", "folder", "--data_root", archive, "--preset", "smoke", "--gpu_id",
                      "cpu", "--workers", 0, "--hash_bit", 16, "--distance_type", "MMHH", "--radius", 0,
                      "--queries", 3, "--train_images", 4, "--per_class", "--test_sample_ratio", 1, *paths,
                      monkeypatch=monkeypatch)
    assert code == 0, err
    run = tmp_path / "log" / "empty_folder_folder"
    record = json.load(open(run / "results" / "folder_MMHH_16bits.json"))
    assert record["metrics"]["topk"] == -1 and (record["metrics"]["queries"], record["metrics"]["database"]) == (9, 39)
    assert len(lines(run / "lists" / "train_img.txt")) == 12
    with tarfile.open(archive, "w:gz") as tar:  # one image more: a split drawn anew would differ
        tar.add(tree, arcname=".")
        tar.add(tree / "bird" / "0000.jpg", arcname="bird/extra.jpg")
    code, err = entry("test_mmhh", "--model_path", tmp_path / "snap" / "empty_folder_folder_iter_00003", "--gpu_id",
                      "cpu", "--workers", 0, "--log_dir", tmp_path / "log", "--radius", 0, monkeypatch=monkeypatch)
    assert code == 0, err
    again = json.load(open(tmp_path / "log" / "empty" / "results" / "folder_MMHH_16bits.json"))
    assert again["metrics"]["database"] == 39 and again["metrics"]["map_topk"] == record["metrics"]["map_topk"]


@pytest.fixture
def coco_lists(coco_mini, tmp_path):
    """HashNet-style lists over COCO-mini's real images: 30 queries, 40 training images, the
    other 129 the database, with its category names."""
    rows = lines(coco_mini / "all.txt")
    folder = tmp_path / "lists"
    os.makedirs(folder)
    for name, part in (("test", rows[:30]), ("train", rows[30:70]), ("database", rows[30:])):
        (folder / f"{name}.txt").write_text("\n".join(part) + "\n")
    shutil.copy(coco_mini / "categories.txt", folder)
    return folder, rows


def test_coco_mini_lists_through_a_mah_script_and_mmhh(coco_mini, coco_lists, tmp_path, monkeypatch):
    """The 80 label columns and multi-label are read from the files, the parts are the files';
    a MAH script and train_mmhh.py (R from --topk) + test_mmhh.py run on them. Catches a
    label count or single/multi flag that needs a table entry, or --topk not reaching MAP@TopK."""
    folder, rows = coco_lists
    data = load_data("lists", str(folder), image_root=str(coco_mini))
    want = np.array([[int(t) for t in row.split()[1:]] for row in rows])  # 159 x 80
    assert (data.info.classes, data.info.multi_label) == (80, True)
    assert data.info.class_names[:2] == tuple(lines(coco_mini / "categories.txt")[:2])
    by_path = {str(coco_mini / row.split()[0]): want[i] for i, row in enumerate(rows)}
    np.testing.assert_array_equal(data.query.labels, [by_path[p] for p in data.query.list.paths])
    assert sorted(data.query.list.paths) == sorted(str(coco_mini / r.split()[0]) for r in rows[:30])
    common = ["--preset", "smoke", "--workers", 0]
    code, err = entry("cascade_NUS_WIDE", "--dataset", "lists", "--data-root", folder, "--image-root", coco_mini,
                      "--gpu", "cpu", "--output-dir", tmp_path / "run", *common, monkeypatch=monkeypatch)
    assert code == 0, err
    assert 0 < json.load(open(tmp_path / "run" / "results" / "lists_MAH-cascade_8bits.json"))["metrics"]["map"] <= 1
    paths = ["--log_dir", tmp_path / "log", "--snap_path", tmp_path / "snap", "--test_output_dir", tmp_path / "out"]
    code, err = entry("train_mmhh", "--s_dataset", "lists", "--data_root", folder, "--image_root", coco_mini,
                      "--gpu_id", "cpu", "--hash_bit", 16, "--radius", 0, "--topk", 50, "--test_sample_ratio", 1,
                      *common, *paths, monkeypatch=monkeypatch)
    assert code == 0, err
    record = json.load(open(tmp_path / "log" / "empty_lists_lists" / "results" / "lists_Hamming_16bits.json"))
    assert record["metrics"]["topk"] == 50 and record["metrics"]["database"] == 129
    code, err = entry("test_mmhh", "--model_path", tmp_path / "snap" / "empty_lists_lists_iter_00003", "--gpu_id",
                      "cpu", "--workers", 0, "--log_dir", tmp_path / "log", "--radius", 0, monkeypatch=monkeypatch)
    assert code == 0, err
    again = json.load(open(tmp_path / "log" / "empty" / "results" / "lists_Hamming_16bits.json"))
    assert (again["metrics"]["topk"], again["metrics"]["map_topk"]) == (50, record["metrics"]["map_topk"])


# ------------------------------------------------------------------ bad input

def small_tree(root, classes=("a", "b"), per_class=4):
    for c, name in enumerate(classes):
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), 40 * c + i, np.uint8)).save(root / name / f"{i}.png")
    return root


def write_list(path, rows):
    path.write_text("".join(f"{name} {' '.join(map(str, labels))}\n" for name, labels in rows))


@pytest.mark.parametrize("case", ["empty class", "one class", "too few", "not an image"])
def test_bad_folders_are_one_line_naming_the_file_and_the_fix(tmp_path, case, monkeypatch):
    """Each bad image tree stops the MAH script before training with exit status 2 and one line
    naming the folder or file and what to do. Catches a tree accepted with a class of no images
    or a single class, a split larger than the images, or a non-image file found mid-training."""
    root = small_tree(tmp_path / "photos")
    options = []
    if case == "empty class":
        os.makedirs(root / "c")
        words = [os.path.join("photos", "c"), "holds no images", "add images to it or remove it"]
    elif case == "one class":
        shutil.rmtree(root / "b")
        words = ["1 class folder (a)", "add a folder for each class"]
    elif case == "too few":
        options = ["--queries", 2, "--train-images", 2, "--per-class"]
        words = [os.path.join("photos", "a"), "4 images, fewer than the split asks for", "lower --queries"]
    else:
        (root / "b" / "notes.txt").write_text("not a picture")
        words = [os.path.join("photos", "b", "notes.txt"), "is not an image", "remove it"]
    code, err = entry("flat_CIFAR-10", "--dataset", "folder", "--data-root", root, "--preset", "smoke", "--gpu", "cpu",
                      "--output-dir", tmp_path / "run", *options, monkeypatch=monkeypatch)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and all(w in err[0] for w in words), err
    assert not os.path.exists(tmp_path / "run" / "run.json")


def test_bad_lists_are_one_line_naming_the_file_and_the_fix(tmp_path):
    """Label columns that differ between list files, and lists whose one label column names a
    single class, are refused naming the files. Catches a column count taken from one file only."""
    root = small_tree(tmp_path / "img")
    write_list(tmp_path / "database.txt", [("a/0.png", (1, 0, 0)), ("b/0.png", (0, 1, 0))])
    write_list(tmp_path / "test.txt", [("a/1.png", (1, 0, 0, 0))])
    with pytest.raises(UserError, match=r"test.txt has 4 label columns .*database.txt has 3; every list file needs "
                                        "the same label columns"):
        load_data("lists", str(tmp_path), image_root=str(root))
    write_list(tmp_path / "database.txt", [("a/0.png", (0,)), ("b/0.png", (0,))])
    write_list(tmp_path / "test.txt", [("a/1.png", (0,))])
    with pytest.raises(UserError, match="every label is class 0, one class only"):
        load_data("lists", str(tmp_path), image_root=str(root))


def test_an_image_that_fails_to_decode_is_named_by_its_path(tmp_path):
    """A JPEG cut short passes the header check at load time; reading it for a batch fails with
    its path. Catches a decoding failure reported without the file."""
    root = small_tree(tmp_path / "photos")
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)  # ~20 kB: the header is a sliver
    Image.fromarray(noise).save(root / "a" / "cut.jpg")
    whole = (root / "a" / "cut.jpg").read_bytes()
    (root / "a" / "cut.jpg").write_bytes(whole[:len(whole) // 2])
    data = load_data("folder", str(root), settings=dict(queries=1, per_class=True))
    part = next(p for p in (data.query, data.database) if str(root / "a" / "cut.jpg") in p.list.paths)
    files = images.FileImages(part.list, images.file_transform(8, 8))
    with pytest.raises(UserError, match=r"cannot read image .*cut.jpg"):
        files[part.list.paths.index(str(root / "a" / "cut.jpg"))]


def test_options_of_the_generic_sources_are_refused_elsewhere():
    """--queries on a data set of the table, whose split is its own, is one line. Catches an
    option silently ignored."""
    parser = mah_args.get_args_parser()
    parser.set_defaults(script="flat_CIFAR-10", arch="flat", dataset="cifar10", paper=dict(bits="4"))
    with pytest.raises(UserError,
                       match="--queries sizes the split of --dataset folder; cifar10 has a split of its own"):
        mah_args.resolve(parser.parse_args(["--queries", "5"]))
    with pytest.raises(UserError, match="--mean sets what the data set table holds"):
        mah_args.resolve(parser.parse_args(["--mean", "0.5,0.5,0.5"]))


def test_an_archive_unpacked_by_two_processes_at_once_is_used_as_it_is(tmp_path, monkeypatch):
    """Two runs started together both unpack a new archive: the one that finishes second finds
    the folder in place, keeps it and removes its own copy. Catches the second run failing on
    the rename (a traceback) or leaving its temporary folder behind."""
    from utils import cache

    source = tmp_path / "src"
    os.makedirs(source / "a")
    (source / "a" / "x.txt").write_text("x")
    archive = tmp_path / "photos.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname=".")
    replace = os.replace

    def other_process_first(src, dst):
        os.makedirs(os.path.join(dst, "a"))
        with open(os.path.join(dst, "a", "x.txt"), "w") as f:
            f.write("x")
        replace(src, dst)

    monkeypatch.setattr(cache.os, "replace", other_process_first)
    folder = cache.unpacked(str(archive), str(tmp_path / "cache"))
    assert open(os.path.join(folder, "a", "x.txt")).read() == "x"
    assert os.listdir(tmp_path / "cache") == [os.path.basename(folder)]
