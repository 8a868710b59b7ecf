"""Noisy supervision and unseen classes (utils.data.protocols): the corruption and the class split
checked from outside, single- and multi-label, and both protocols end to end through a MAH
script, train_mmhh.py and test_mmhh.py."""
import json
import os
import runpy
import sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

import numpy as np
import pytest

from utils.data import protocols
from utils.data.labels import label_matrix
from utils.data.loader import load_data, load_digits
from utils.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def multi_label(n, classes, seed):
    rows = (np.random.default_rng(seed).random((n, classes)) < 0.25).astype(np.uint8)
    rows[rows.sum(1) == 0, 0] = 1  # every item has a label
    return rows


@pytest.mark.parametrize("kind", ["single", "multi"])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4])
def test_label_noise_corrupts_an_exact_seeded_share_with_disjoint_labels(kind, rate):
    """round(P n) rows change, each to a label set disjoint from its own; the rest are as they
    were; the same seed gives the same corruption, another seed another; P = 0 changes
    nothing. Catches a share drawn per row (not exact), a donor that shares a label (the
    pairs would not all be wrong), or an unseeded draw."""
    labels = np.random.default_rng(1).integers(0, 10, 500) if kind == "single" else multi_label(500, 12, 1)
    noisy, corrupted = protocols.noisy_labels(labels, 10 if kind == "single" else 12, rate, seed=3)
    assert len(corrupted) == round(rate * 500) and len(set(corrupted.tolist())) == len(corrupted)
    rest = np.setdiff1d(np.arange(500), corrupted)
    np.testing.assert_array_equal(noisy[rest], labels[rest])
    old, new = label_matrix(labels, 12, "cpu").numpy()[corrupted], label_matrix(noisy, 12, "cpu").numpy()[corrupted]
    assert not (old * new).any() and (new.sum(1) > 0).all()
    again, same = protocols.noisy_labels(labels, 12, rate, seed=3)
    np.testing.assert_array_equal(again, noisy)
    np.testing.assert_array_equal(same, corrupted)
    if rate:
        assert not np.array_equal(protocols.noisy_labels(labels, 12, rate, seed=4)[1], corrupted)


def test_label_noise_refuses_rates_it_cannot_meet():
    with pytest.raises(UserError, match=r"--label-noise 1: the rate must be in \[0, 1\)"):
        protocols.noisy_labels(np.zeros(10, int), 2, 1.0, 0)
    with pytest.raises(UserError, match="only 0 of the 10 training items share no label with another"):
        protocols.noisy_labels(np.zeros(10, int), 2, 0.5, 0)  # one class: no disjoint donor


def test_unseen_classes_on_single_label_digits():
    """75% of the 10 classes (8) are seen, seeded: no training item has an unseen label, every
    query and database item has one, and training keeps every seen item it had. Catches the
    filters swapped, a rounding other than round(), or a split not drawn from the seed."""
    data = load_data("digits")
    filtered, record = protocols.apply_unseen(data, 0.75, seed=5)
    unseen = record["unseen_classes"]
    assert len(unseen) == 2 and unseen == protocols.unseen_classes(10, 0.75, 5).tolist()
    assert unseen != protocols.unseen_classes(10, 0.75, 6).tolist() or unseen == [0, 1]
    assert not np.isin(filtered.train.labels, unseen).any()
    assert np.isin(filtered.query.labels, unseen).all() and np.isin(filtered.database.labels, unseen).all()
    assert len(filtered.train.labels) == (~np.isin(data.train.labels, unseen)).sum()
    assert len(filtered.database.labels) == np.isin(data.database.labels, unseen).sum()


def test_unseen_classes_on_multi_label_lists(coco_mini, tmp_path):
    """Real multi-label COCO lists: training items carry only seen labels, query and database
    items at least one unseen, and their label rows keep only the unseen labels, so two items
    sharing only a seen label are not relevant to each other. Catches relevance on all labels
    or items with mixed labels put in training."""
    lines = (coco_mini / "all.txt").read_text().splitlines()
    for name, part in (("test", lines[:40]), ("train", lines[40:100]), ("database", lines[40:])):
        (tmp_path / f"{name}.txt").write_text("\n".join(part) + "\n")
    data = load_data("coco_80", data_root=str(tmp_path), image_root=str(coco_mini))
    filtered, record = protocols.apply_unseen(data, 0.75, seed=0)
    mask = np.zeros(80, bool)
    mask[record["unseen_classes"]] = True
    assert mask.sum() == 20
    assert not filtered.train.labels[:, mask].any()
    assert filtered.query.labels[:, mask].any(1).all() and filtered.database.labels[:, mask].any(1).all()
    assert not filtered.query.labels[:, ~mask].any() and not filtered.database.labels[:, ~mask].any()
    kept = [os.path.relpath(p, coco_mini) for p in filtered.database.list.paths]
    original = {os.path.relpath(p, coco_mini): row for p, row in zip(data.database.list.paths, data.database.labels)}
    for path, row in zip(kept, filtered.database.labels):
        np.testing.assert_array_equal(row, original[path] * mask)


def test_unseen_classes_refuse_an_empty_part():
    data = load_data("digits")
    with pytest.raises(UserError, match=r"--seen-fraction 0.99 of 10 classes leaves no seen or no unseen class"):
        protocols.apply_unseen(data, 0.99, 0)
    one_class = data.__class__(**{**data.__dict__, "query": data.query.__class__(
        labels=data.query.labels[data.query.labels == 0], index=data.query.index[data.query.labels == 0])})
    seen_zero = next(s for s in range(50) if 0 not in protocols.unseen_classes(10, 0.75, s))
    with pytest.raises(UserError, match="leaves the query part of digits empty"):
        protocols.apply_unseen(one_class, 0.75, seen_zero)


def entry(script, *argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *map(str, argv)])
    out, err, code = StringIO(), StringIO(), 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            runpy.run_path(os.path.join(REPO, f"{script}.py"), run_name="__main__")
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def test_both_protocols_through_a_mah_script_train_mmhh_and_test_mmhh(tmp_path, monkeypatch):
    """--protocol unseen with --label-noise 0.2 on digits: the MAH run evaluates among the two
    unseen classes (its tie-aware MAP against 2 classes, not 10), records the protocol, and
    protocol.json holds exactly round(0.2 n) corrupted training items; train_mmhh.py and
    test_mmhh.py on its snapshot test the same unseen queries and record the same protocol
    as protocol.json (its corrupted items re-derived). With P = 0 and the default
    protocol the split file is byte-identical to a run without the options. Catches the
    options parsed and ignored, or the noise reaching the evaluation labels."""
    code, out, err = entry("cascade_CIFAR-10", "--dataset", "digits", "--preset", "smoke", "--gpu", "cpu",
                           "--protocol", "unseen", "--label-noise", 0.2, "--output-dir", tmp_path / "mah",
                           monkeypatch=monkeypatch)
    assert code in (0, None), err
    record = json.load(open(tmp_path / "mah" / "results" / "digits_MAH-cascade_4bits.json"))
    saved = json.load(open(tmp_path / "mah" / "protocol.json"))
    assert record["protocol"]["protocol"] == "unseen" and len(record["protocol"]["unseen_classes"]) == 2
    assert saved["corrupted_items"] == len(saved["corrupted"]) == round(0.2 * saved["train_items"])
    assert "protocol unseen, unseen classes" in out
    digits = load_digits()[1]  # the shown items are rows of the digits array: all of unseen classes
    assert all(digits[item] in record["protocol"]["unseen_classes"] for shown in record["retrieval"]
               for item in [shown["query"], *shown["top"]])
    paths = ["--log_dir", tmp_path / "log", "--snap_path", tmp_path / "snap", "--test_output_dir", tmp_path / "out"]
    code, _, err = entry("train_mmhh", "--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "cpu", "--hash_bit",
                         16, "--protocol", "unseen", "--label_noise", 0.2, "--test_sample_ratio", 1, *paths,
                         monkeypatch=monkeypatch)
    assert code in (0, None), err
    trained = json.load(open(tmp_path / "log" / "empty_digits_digits" / "results" / "digits_Hamming_16bits.json"))
    code, _, err = entry("test_mmhh", "--model_path", tmp_path / "snap" / "empty_digits_digits_iter_00003",
                         "--gpu_id", "cpu", "--log_dir", tmp_path / "tested", monkeypatch=monkeypatch)
    assert code in (0, None), err
    tested = json.load(open(tmp_path / "tested" / "empty" / "results" / "digits_Hamming_16bits.json"))
    unseen = protocols.unseen_classes(10, 0.75, 0)
    want = int(np.isin(load_data("digits").query.labels, unseen).sum())
    assert trained["metrics"]["queries"] == tested["metrics"]["queries"] == want
    assert trained["metrics"]["map_topk"] == tested["metrics"]["map_topk"]
    # what the balls hold, counted here from the codes the run saved; test_mmhh.py tests the same codes
    q, d = (np.where(np.load(tmp_path / "out" / "empty_iter_00003" / f"{n}.npy") >= 0, 1, -1)
            for n in ("test_code", "database_code"))
    sizes = ((16 - q @ d.T) // 2 <= 2).sum(1)
    assert trained["metrics"]["balls"]["empty_ball_share"] == pytest.approx(np.mean(sizes == 0))
    assert trained["metrics"]["balls"]["ball_items_median"] == np.median(sizes)
    assert tested["metrics"]["balls"] == trained["metrics"]["balls"]
    # one record of the protocol, the same in protocol.json (less the indices) and both results files
    saved = json.load(open(tmp_path / "log" / "empty_digits_digits" / "protocol.json"))
    assert tested["protocol"] == trained["protocol"] == protocols.summary(saved)
    assert saved["unseen_classes"] == unseen.tolist() and saved["seen_fraction"] == 0.75
    assert saved["label_noise"] == 0.2 and saved["corrupted_items"] == len(saved["corrupted"]) == \
        round(0.2 * saved["train_items"])
    for folder, extra in (("plain", []), ("zero", ["--label-noise", 0])):
        entry("cascade_CIFAR-10", "--dataset", "digits", "--preset", "smoke", "--gpu", "cpu", "--max-iter", 1,
              "--eval-every", 1, *extra, "--output-dir", tmp_path / folder, monkeypatch=monkeypatch)
    assert (tmp_path / "plain" / "split.json").read_bytes() == (tmp_path / "zero" / "split.json").read_bytes()
    assert json.load(open(tmp_path / "zero" / "protocol.json"))["corrupted_items"] == 0


@pytest.mark.parametrize("argv,words", [
    (["--label-noise", "1"], "--label-noise: must be in [0, 1)"),
    (["--label-noise", "-0.1"], "--label-noise: must be in [0, 1)"),
    (["--protocol", "unseen", "--seen-fraction", "1"], "--seen-fraction: must be in (0, 1)"),
    (["--protocol", "unseen", "--seen-fraction", "0.01"], "leaves no seen or no unseen class"),
])
def test_bad_protocol_options_are_one_line(argv, words, tmp_path, monkeypatch):
    code, _, err = entry("cascade_CIFAR-10", "--dataset", "digits", "--preset", "smoke", "--gpu", "cpu", *argv,
                         "--output-dir", tmp_path / "x", monkeypatch=monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and words in lines[0], err
    assert not os.path.exists(tmp_path / "x")
