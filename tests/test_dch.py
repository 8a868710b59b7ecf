"""The losses MMHH is compared with and the validation split: DCH's Cauchy cross-entropy and
quantization and MMHH without its margin (MMHH0) against values worked out by hand, the
validation split (disjoint, seeded, saved and re-read), both losses through train_mmhh.py and
test_mmhh.py, and validation results kept out of the report's tables. Hand values come from
the papers' formulas (DCH: Cao et al., CVPR 2018; MMHH.md), never from the code under test."""
import argparse
import json
import math

import numpy as np
import pytest
import torch

from test_mmhh import colour_model, mmhh_test_args, read_json, train_args  # noqa: F401
from test_mmhh import write_lists
from utils import mmhh
from utils.data import splits
from utils.errors import UserError
from utils.mmhh import common as mmhh_common
from utils.mmhh.evaluate import method_of
from utils.mmhh.losses import (dch_loss, dch_quantization, dch_weights, mmhh_loss, pair_loss, parse_margin_params,
                               quantization)
from utils.report import collect, glance, tables

# K = 4: the row h = (1, 1, 1, 1) / 2 against three codes at cosine 0, -1/2 and 1/2, that is at
# d = K/2 (1 - cos) = 2, 3 and 1; only the first pair is similar. The squared Euclidean
# distances of the raw outputs are 0.25 * 2 + 2.25 * 2 = 5, 0.25 + 2.25 * 3 = 7 and
# 0.25 * 3 + 2.25 = 3.
H1 = torch.full((1, 4), 0.5)
H2 = torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, -1.0]])
S = torch.tensor([[1.0, 0.0, 0.0]])
COSINE_D, EUCLIDEAN_D = (2.0, 3.0, 1.0), (5.0, 7.0, 3.0)


def paper_term(s, d, gamma):
    """The DCH paper's per-pair loss as it writes it: s log(d / gamma) + log(1 + gamma / d)."""
    return s * math.log(d / gamma) + math.log(1 + gamma / d)


def weighted_mean(weights, d, gamma):
    return sum(w * paper_term(s, x, gamma) for w, s, x in zip(weights, (1, 0, 0), d)) / 3


@pytest.mark.parametrize("euclidean, spec, weights", [
    (False, "1", (1, 1, 1)),
    (False, "auto", (3, 1.5, 1.5)),  # the paper's |S| / |S1| = 3 / 1 and |S| / |S0| = 3 / 2
    (False, "2", (2, 1, 1)),
    (True, "1", (1, 1, 1)),
    (True, "auto", (3, 1, 1)),  # the released code's: |S| / |S1| and 1
])
def test_dch_loss_by_hand(euclidean, spec, weights):
    """DCH's loss on three pairs, gamma 10, under both distances and the three weightings.
    Catches the paper's p = gamma / (gamma + d) replaced by MMHH's gamma / 2 / (d + gamma), the
    cosine form fed unnormalised outputs (its d would not be 2, 3, 1 for h = 1/2), the Euclidean
    form normalised, or the auto weights taken from the other losses' ratio alone."""
    w_s, w_d = dch_weights(spec, S, 1.0, euclidean)
    assert (float(w_s), float(w_d)) == pytest.approx(weights[:2])
    got = dch_loss(H1, H2, S, 10.0, w_s, w_d, euclidean).item()
    assert got == pytest.approx(weighted_mean(weights, EUCLIDEAN_D if euclidean else COSINE_D, 10.0), rel=1e-5)


def test_dch_auto_weights_come_from_the_whole_pair_matrix_and_the_share_is_its_size():
    """Under torchrun a process holds rows of the pair matrix: the weights are the whole matrix's
    (S_all: 6 pairs, 3 similar, so 2 and 2), the loss is this share's mean, and its share of the
    normaliser is 3 / 6. Catches weights taken from the share (3 and 1.5) or a share of 1."""
    S_all = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    args = argparse.Namespace(distance_type="DCH", dch_distance="cosine", similar_weight_type="auto", gamma=10.0)
    loss, share, w_s = pair_loss(args, H1, H2, S, S_all, None, 1.0)
    assert (share, w_s) == (0.5, 2.0)
    assert loss.item() == pytest.approx(weighted_mean((2, 2, 2), COSINE_D, 10.0), rel=1e-5)


@pytest.mark.parametrize("euclidean, d", [
    (False, 2 - 3 / math.sqrt(2.5)),  # K/2 (1 - cos): cos = 3 / (sqrt(2.5) * 2) against the ones
    (True, 0.5),  # (0.5 - 1)^2 twice
])
def test_dch_quantization_by_hand(euclidean, d):
    """The Cauchy quantization log(1 + d(|h|, 1) / gamma), mean over rows, gamma 2: the row
    (0.5, -0.5, 1, 1) has |h| = (0.5, 0.5, 1, 1); the row (-1, 1, 1, -1) is on the vertex (0).
    Catches h used in place of |h|, the sum over rows, or the pair distance's form ignored."""
    H = torch.tensor([[0.5, -0.5, 1.0, 1.0], [-1.0, 1.0, 1.0, -1.0]])
    assert dch_quantization(H, 2.0, euclidean).item() == pytest.approx(math.log(1 + d / 2) / 2, abs=1e-6)
    args = argparse.Namespace(distance_type="DCH", dch_distance="euclidean" if euclidean else "cosine", gamma=2.0)
    assert quantization(args, H).item() == pytest.approx(math.log(1 + d / 2) / 2, abs=1e-6)


def test_dch_stays_finite_for_a_dissimilar_pair_at_distance_zero():
    """A multi-label item without labels is dissimilar to itself (d = 0): log(1 + gamma / d) must
    stay finite, and so must its gradient. Catches the distance used without its floor."""
    H = torch.tensor([[0.3, -0.2, 0.9]], requires_grad=True)
    for euclidean in (False, True):
        loss = dch_loss(H, H, torch.zeros(1, 1), 5.0, 1.0, 1.0, euclidean)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(H.grad).all()
        H.grad = None


def test_mmhh0_is_the_mmhh_loss_with_every_reweighting_factor_1():
    """MMHH0 by hand, gamma 10, similar weight 2: similar pairs -log p = log 2 + log(1 + d / 10),
    dissimilar -log(1 - p) = log(d + 10) - log(d + 5), no margin factor; the MMHH loss on the same
    pairs has 0.5 (similar inside), 1.0 and 0.8 (dissimilar outside, inside margin 2). Catches
    the reweighting kept under MMHH0, or --distance_type MMHH0 dispatched to the MMHH loss."""
    similar, far, near = math.log(2) + math.log(1.2), math.log(13) - math.log(8), math.log(11) - math.log(6)
    H = H1 * 2  # cosine distances do not depend on the scale
    assert mmhh_loss(H, H2, S, 10.0, None, 2.0).item() == pytest.approx((2 * similar + far + near) / 3, rel=1e-6)
    margins = parse_margin_params("0.5:0.8:1.0:1.0:2.0")
    assert mmhh_loss(H, H2, S, 10.0, margins, 2.0).item() == pytest.approx(
        (2 * 0.5 * similar + 1.0 * far + 0.8 * near) / 3, rel=1e-6)
    args = argparse.Namespace(distance_type="MMHH0", similar_weight_type="2", gamma=10.0)
    loss, share, w_s = pair_loss(args, H, H2, S, S, margins, 1.0)
    assert (share, w_s) == (1.0, 2.0)
    assert loss.item() == pytest.approx((2 * similar + far + near) / 3, rel=1e-6)


@pytest.mark.parametrize("settings, method", [
    ({"distance_type": "MMHH0", "margin_params": "0.5:0.8:1.0:1.0:2.0"}, "MMHH0"),
    ({"distance_type": "MMHH", "margin_params": "1:1:1:1:2"}, "MMHH0"),  # docs/claims.md's command
    ({"distance_type": "MMHH", "margin_params": "1:1:1:1:5"}, "MMHH0"),  # the margin then decides nothing
    ({"distance_type": "MMHH", "margin_params": "0.5:0.8:1.0:1.0:2.0"}, "MMHH"),
    ({"distance_type": "MMHH", "margin_params": "1:1:1:0.9:2"}, "MMHH"),
    ({"distance_type": "DCH", "margin_params": "1:1:1:1:2"}, "DCH"),
    ({"distance_type": "Hamming"}, "Hamming"),
])
def test_results_name_each_loss_as_its_own_method(settings, method):
    """Catches MMHH0 or DCH filed as MMHH or Hamming, or the margin-free MMHH command of
    docs/claims.md filed as MMHH."""
    assert method_of(settings) == method


# ----------------------------------------------------------------------- validation split

def test_validation_positions_divide_the_training_part_by_seed():
    """A tenth (rounded) of 1,697 is 170 queries; queries and database are disjoint and cover the
    part; the same seed gives the same split, another seed another. Catches an unseeded draw,
    overlapping parts, or the seed of the split ignored."""
    a, b, c = splits.make_validation(1697, 3), splits.make_validation(1697, 3), splits.make_validation(1697, 4)
    assert len(a["query"]) == 170 and len(a["database"]) == 1527
    assert not set(a["query"]) & set(a["database"]) and set(a["query"]) | set(a["database"]) == set(range(1697))
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["query"], c["query"])


def paths(part):
    return set(part.list.paths)


def test_the_validation_split_never_touches_the_test_queries_or_the_database(tmp_path):
    """HashNet lists of 40 train, 60 database, 20 test images: the validation queries (4 = a
    tenth of 40) and database (36) come from train.txt only, so they are disjoint from each
    other, from the test queries and from the database, and the model trains on the 36. Catches
    validation queries drawn from the test split or the database, or training on them."""
    root = write_lists(tmp_path / "lists", 80, (40, 60, 20), seed=1)
    full = mmhh_common.data_for("coco_80", {"data_root": str(root)}, None)[0]
    val, _, record = mmhh_common.data_for("coco_80", {"data_root": str(root), "eval_on": "val"}, None)
    assert record["eval_on"] == "val" and len(val.query.labels) == 4 and len(val.database.labels) == 36
    assert paths(val.train) == paths(val.database)
    assert not paths(val.query) & paths(val.database)
    assert paths(val.query) | paths(val.database) == paths(full.train)
    for part in (val.query, val.database):
        assert not paths(part) & (paths(full.query) | paths(full.database))
    assert mmhh_common.data_for("coco_80", {"data_root": str(root)}, None)[2]["eval_on"] == "test"


def test_the_validation_split_is_saved_in_split_json_and_read_back(tmp_path, colour_model):
    """A run with --eval_on val saves its validation split in split.json; later reads take it from
    there (a split edited in the file is the one used), and a file made with another seed is a
    one-line error. Catches a split redrawn on every read instead of the run's own."""
    mmhh.train_main(train_args(tmp_path, "--s_dataset", "digits", "--hash_bit", 8, "--eval_on", "val",
                               "--distance_type", "DCH"))
    run_dir = tmp_path / "log" / "empty_digits_digits"
    saved = read_json(run_dir / "split.json")
    v = saved["validation"]
    assert (v["train_items"], v["seed"], len(v["query"]), len(v["database"])) == (1697, 0, 170, 1527)
    assert set(v["query"]).isdisjoint(v["database"])
    train = np.array(saved["train"])  # digits: the training part is the database (dpsh)
    data = mmhh_common.data_for("digits", {"eval_on": "val", "protocol": "dpsh"}, str(run_dir))[0]
    assert np.array_equal(data.query.index, train[v["query"]])
    assert not set(data.query.index) & set(np.array(saved["query"]))  # never a test query
    v["query"], v["database"] = v["database"][:5], v["query"] + v["database"][5:]
    (run_dir / "split.json").write_text(json.dumps(saved))
    data = mmhh_common.data_for("digits", {"eval_on": "val", "protocol": "dpsh"}, str(run_dir))[0]
    assert np.array_equal(data.query.index, train[v["query"]]) and len(data.database.index) == 1692
    with pytest.raises(UserError, match="validation split was made from 1697 training items with seed 0"):
        mmhh_common.data_for("digits", {"eval_on": "val", "protocol": "dpsh", "seed": 1}, str(run_dir))


# ----------------------------------------------------------------------------- end to end

@pytest.mark.parametrize("loss", [
    ["--distance_type", "DCH", "--dch_distance", "euclidean", "--similar_weight", "auto", "--batch_type",
     "BatchInitMem", "--batch_params", "1", "--loss_lambda", "0.1"],
    ["--distance_type", "MMHH0", "--eval_on", "val", "--protocol", "unseen", "--label_noise", "0.2"],
])
def test_both_losses_through_train_mmhh_and_test_mmhh(tmp_path, loss):
    """The mains of train_mmhh.py then test_mmhh.py on the smoke preset, from their parsers (the
    memory bank with DCH; MMHH0 on the validation split under unseen classes and label noise):
    the snapshot tested again gives the same metrics under its own split, the results name the
    loss and the split, and --opt-test tests it the other way. Catches a loss or option that
    breaks either script, or test_mmhh.py testing a validation snapshot on another split."""
    method, val = loss[1], "val" in loss
    trained = mmhh.train_main(train_args(tmp_path, "--s_dataset", "digits", "--hash_bit", 8, "--annotation", "e2e",
                                         "--test_sample_ratio", 1, "--radius", 2, *loss))
    name = f"digits_{method}_8bits{'_val' if val else ''}.json"
    assert read_json(tmp_path / "log" / "e2e_digits_digits" / "results" / name) == json.loads(json.dumps(trained))
    assert trained["method"] == method and trained["protocol"]["eval_on"] == ("val" if val else "test")
    assert "validation_split" not in trained["protocol"]
    snap = str(tmp_path / "snap" / "e2e_digits_digits_iter_00003")
    tested = mmhh.test_main(mmhh_test_args(tmp_path, "--model_path", snap, "--annotation", "again"))
    assert tested["metrics"] == trained["metrics"] and tested["method"] == method
    assert (tmp_path / "tlog" / "again" / "results" / name).exists()
    opt = mmhh.test_main(mmhh_test_args(tmp_path, "--model_path", snap, "--annotation", "opt", "--opt-test"))
    assert opt["metrics"]["opt_test"] is True


def test_test_mmhh_refuses_validation_results_of_a_snapshot_that_trained_on_them(tmp_path, colour_model):
    """A snapshot trained on the whole training part has seen the validation queries: testing it
    with --eval_on val is a one-line error. Catches validation scores of a model trained on them."""
    mmhh.train_main(train_args(tmp_path, "--s_dataset", "digits", "--hash_bit", 8))
    snap = str(tmp_path / "snap" / "empty_digits_digits_iter_00003")
    with pytest.raises(UserError, match="--eval_on val: this snapshot trained on the whole training part"):
        mmhh.test_main(mmhh_test_args(tmp_path, "--model_path", snap, "--eval_on", "val"))


def record(method, value, eval_on=None, trained_on=None):
    return {"paper": "MMHH", "dataset": "cifar10", "method": method, "bits": 32, "preset": "cpu-pretrained",
            "backbone": "MobileNetV2Fc", "seed": 0, "seconds": 60.0, "device": "cpu",
            "args": {} if trained_on is None else {"eval_on": trained_on},
            "protocol": {"protocol": "deephash", "label_noise": 0.0, **({"eval_on": eval_on} if eval_on else {})},
            "metrics": {"map_within_radius": value, "radius": 2, "map_topk": value, "topk": -1, "opt_test": False}}


def test_validation_results_stay_out_of_the_test_tables(tmp_path):
    """Test results of MMHH (0.4111) and DCH (0.5222) fill the tables; a DCH validation result
    (0.9333) and a test of a snapshot trained on the validation split (0.8444) do not. Catches
    validation runs pooled with the test runs of the same cell."""
    folder = tmp_path / "results"
    folder.mkdir()
    for i, r in enumerate((record("MMHH", 0.4111, "test"), record("DCH", 0.5222), record("DCH", 0.9333, "val", "val"),
                           record("DCH", 0.8444, "test", "val"))):
        (folder / f"{i}.json").write_text(json.dumps(r))
    records = collect.load_records(str(folder))
    assert sorted(r["metrics"]["map_within_radius"] for r in records["validation"]) == [0.8444, 0.9333]
    text = tables.mmhh_section(records["mmhh"]) + glance.headline_section(records)
    assert "0.4111" in text and "0.5222" in text and "DCH loss" in text
    assert "0.9333" not in text and "0.8444" not in text
