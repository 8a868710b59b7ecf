"""MIRFlickr-25K end to end on a slice of the real shared archive (tests/conftest.py): the
published split read as it is, its column order, the missing-image policy, the archive as a
folder or a tar, data/FLICKR/prepare.py, and the FLICKR scripts and MMHH trained on it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import FLICKR_SLICE
from utils.data import loader as data
from utils.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def annotation_labels(root):
    """N x 38 labels straight from the official annotation files, columns in file-name order."""
    folder = root / "mirflickr25k_annotations_v080"
    names = sorted(f for f in os.listdir(folder) if f.endswith(".txt") and f != "README.txt")
    labels = np.zeros((FLICKR_SLICE, len(names)), np.uint8)
    for column, name in enumerate(names):
        for line in (folder / name).read_text().split():
            labels[int(line) - 1, column] = 1
    return labels


def published_numbers(root, split):
    """Image numbers of the published list `split`, in list order."""
    lines = (root / "mah-original-lists" / f"{split}_image.txt").read_text().split()
    return np.array([int(line.rsplit("/im", 1)[1][:-4]) for line in lines])


@pytest.fixture(scope="module")
def loaded(flickr_slice, tmp_path_factory):
    split_file = str(tmp_path_factory.mktemp("split") / "split.json")
    return data.load_data("flickr25k", data_root=str(flickr_slice), split_file=split_file, missing="drop"), split_file


def test_published_split_keeps_present_rows_with_alphabetical_columns(flickr_slice, loaded):
    """Rows of the published lists whose image exists are kept (the others counted), in a saved
    seeded order, their labels mapped from the authors' column order onto the alphabetical one,
    which must agree with the annotation files. Catches a wrong or missing column permutation
    (labels would differ), the inverse permutation, and a miscount of dropped rows."""
    got, split_file = loaded
    truth = annotation_labels(flickr_slice)
    record = json.load(open(split_file))
    for part, split in (("query", "test"), ("database", "database")):
        numbers = published_numbers(flickr_slice, split)
        present = numbers[numbers <= FLICKR_SLICE]
        assert record["missing_dropped"][part] == len(numbers) - len(present) > 0
        listed = getattr(got, part).list
        mine = np.array([int(os.path.basename(p)[2:-4]) for p in listed.paths])
        np.testing.assert_array_equal(mine, present[record[part]])  # the saved order over the present rows
        np.testing.assert_array_equal(getattr(got, part).labels, truth[mine - 1])
    assert truth[got.database.labels.any(1).nonzero()[0]].any()  # real labels, not all zeros


def test_missing_images_stop_the_run_by_default(flickr_slice):
    """Catches missing rows silently dropped (or a first-missing-only message without the count)."""
    numbers = published_numbers(flickr_slice, "database")
    first = numbers[numbers > FLICKR_SLICE][0]
    count = int((numbers > FLICKR_SLICE).sum())
    with pytest.raises(UserError, match=rf"im{first}.jpg not found, and {count} of the {len(numbers)} images .* "
                                        r"--missing-images drop"):
        data.load_data("flickr25k", data_root=str(flickr_slice))


def test_the_archive_as_a_tar_gives_the_same_data(flickr_slice, loaded, tmp_path, monkeypatch):
    """Catches a tar --data-root not unpacked (or unpacked without the published lists)."""
    monkeypatch.setenv("HASHING_CACHE", str(tmp_path / "cache"))
    got, split_file = loaded
    again = data.load_data("flickr25k", data_root=f"{flickr_slice}.tar", split_file=split_file, missing="drop")
    np.testing.assert_array_equal(again.database.labels, got.database.labels)
    assert [os.path.basename(p) for p in again.query.list.paths] == [os.path.basename(p) for p in got.query.list.paths]
    assert os.listdir(tmp_path / "cache")[0].startswith("mirflickr25k-")


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_prepare_writes_the_published_split(flickr_slice, tmp_path):
    """data/FLICKR/prepare.py on the tar: the published split's present rows with their
    alphabetical labels, and the drop counts in prepared.json; without the drop option, one line."""
    out = tmp_path / "lists"
    env_cache = dict(HASHING_CACHE=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "data/FLICKR/prepare.py", "--root", f"{flickr_slice}.tar", "--out",
                             str(out), "--missing-images", "drop"], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env={**os.environ, **env_cache})
    assert result.returncode == 0, result.stderr
    truth = annotation_labels(flickr_slice)
    record = json.loads((out / "prepared.json").read_text())
    for split in ("test", "database"):
        numbers = published_numbers(flickr_slice, split)
        present = numbers[numbers <= FLICKR_SLICE]
        assert (out / f"{split}_img.txt").read_text().split() == [f"mirflickr/im{k}.jpg" for k in present]
        rows = np.loadtxt(out / f"{split}_label.txt", dtype=np.uint8, ndmin=2)
        np.testing.assert_array_equal(rows, truth[present - 1])
        assert record["missing_dropped"][split] == len(numbers) - len(present)
    assert record["split"] == "published"
    result = subprocess.run([sys.executable, "data/FLICKR/prepare.py", "--root", str(flickr_slice), "--out",
                             str(tmp_path / "x")], cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--missing-images drop" in lines[0], result.stderr


@pytest.mark.parametrize("script", ["cascade_FLICKR", "flat_FLICKR"])
def test_flickr_scripts_on_the_real_slice(flickr_slice, tmp_path, script):
    """Each FLICKR script trains and evaluates on the published split of the real images."""
    out = tmp_path / "run"
    result = run(f"{script}.py", "--preset", "smoke", "--gpu", "cpu", "--data-root", flickr_slice,
                 "--missing-images", "drop", "--workers", "0", "--output-dir", out)
    assert result.returncode == 0, result.stderr
    bits = 8 if script.startswith("cascade") else 6
    record = json.load(open(out / "results" / f"flickr25k_MAH-{script.split('_')[0]}_{bits}bits.json"))
    assert 0 < record["metrics"]["map_tie_aware"] <= 1 and record["args"]["missing_images"] == "drop"
    assert json.load(open(out / "split.json"))["missing_dropped"]["database"] > 0


def test_mmhh_trains_and_tests_on_the_real_slice(flickr_slice, tmp_path):
    """MMHH and the HashNet loss on the published split, R = 5000; test_mmhh.py reproduces it."""
    common = ["--preset", "smoke", "--gpu_id", "cpu", "--workers", "0", "--log_dir", tmp_path / "log",
              "--snap_path", tmp_path / "snap", "--test_output_dir", tmp_path / "out", "--test_sample_ratio", 1]
    result = run("train_mmhh.py", "--s_dataset", "flickr25k", "--data_root", flickr_slice, "--missing_images", "drop",
                 "--distance_type", "MMHH", "--annotation", "f", "--radius", 2, *common)
    assert result.returncode == 0, result.stderr
    record = json.load(open(tmp_path / "log" / "f_flickr25k_flickr25k" / "results" / "flickr25k_MMHH_48bits.json"))
    assert record["metrics"]["topk"] == 5000 and 0 <= record["metrics"]["map_within_radius"] <= 1
    result = run("test_mmhh.py", "--model_path", tmp_path / "snap" / "f_flickr25k_flickr25k_iter_00003",
                 "--gpu_id", "cpu", "--workers", "0", "--log_dir", tmp_path / "log", "--radius", 2)
    assert result.returncode == 0, result.stderr
    again = json.load(open(tmp_path / "log" / "empty" / "results" / "flickr25k_MMHH_48bits.json"))
    assert again["metrics"]["map_within_radius"] == record["metrics"]["map_within_radius"]
