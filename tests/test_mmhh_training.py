"""MMHH's training loop and test observed from outside: schedules as the optimiser applies
them, the HashNet scale, the loss the loop logs, batch order, the memory bank's start,
momentum and row alignment, initialisation, eval mode, the test conventions and --rank_by,
and resume with dropout. Expected values come from the spec's formulas (MMHH.md) and naive
loops written here; the network is the hash layer on the mean colour (test_mmhh.py's
colour_model) unless said otherwise, so that runs take a second."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_mmhh import (MeanColour, colour_model, colour_network, log_lines, mmhh_test_args,  # noqa: F401
                       killed_at_first_checkpoint, naive_ball, train_args, write_lists)
from utils import mmhh
from utils.mmhh import args as mmhh_args
from utils.mmhh import common as mmhh_common
from utils.mmhh import engine as mmhh_engine
from utils.mmhh.losses import mmhh_loss, parse_margin_params
from utils.models import HashModel

MARGINS = parse_margin_params("0.5:0.8:1.0:1.0:2.0")


def digits_args(tmp_path, *extra):
    return train_args(tmp_path, "--s_dataset", "digits", "--hash_bit", 8, *extra)


# ------------------------------------------------------------------------------ the loss

def test_a_pair_exactly_at_the_margin_counts_as_inside():
    """MMHH.md: a pair is inside when d <= margin. With K = 4, codes two bits apart have d = 2
    exactly (cos 0) and three bits apart d = 3; margin 2, gamma 10. Similar pairs: inside
    weight sim_in 0.5 on -log p = log 2 + log(1 + d/10), outside sim_out 1.0; dissimilar: inside
    dis_in 0.8 on log(d + 10) - log(d + 5), outside dis_out 1.0. Catches d < margin."""
    H1 = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    H2 = torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, -1.0, -1.0]])
    similar = (0.5 * (math.log(2) + math.log(1.2)) + 1.0 * (math.log(2) + math.log(1.3))) / 2
    dissimilar = (0.8 * (math.log(12) - math.log(7)) + 1.0 * (math.log(13) - math.log(8))) / 2
    assert mmhh_loss(H1, H2, torch.ones(1, 2), 10.0, MARGINS, 1.0).item() == pytest.approx(similar, rel=1e-6)
    assert mmhh_loss(H1, H2, torch.zeros(1, 2), 10.0, MARGINS, 1.0).item() == pytest.approx(dissimilar, rel=1e-6)


def test_the_logged_loss_is_pair_plus_lambda_times_quantization(tmp_path, colour_model):
    """The training loss is pair + loss_lambda * quantization (MMHH.md), per logged iteration.
    Catches the quantization term dropped from what is optimised."""
    mmhh.train_main(digits_args(tmp_path, "--num_iters", 4, "--log_every", 1, "--loss_lambda", 0.5))
    lines = log_lines(tmp_path / "log" / "empty_digits_digits" / "log.jsonl")
    assert len(lines) == 4
    for line in lines:
        assert line["quantization_loss"] > 0
        assert line["loss"] == pytest.approx(line["pair_loss"] + 0.5 * line["quantization_loss"], rel=1e-6)


# ----------------------------------------------------------------- schedules as applied

def spy_optimizer(monkeypatch):
    """Every optimiser step's (lr, weight decay) per parameter group, by group name."""
    steps, build = [], mmhh_engine.build_optimizer

    def spying(model, kind, lr, decay):
        opt = build(model, kind, lr, decay)
        step = opt.step

        def recorded(*a, **kw):
            steps.append({g["name"]: (g["lr"], g["weight_decay"]) for g in opt.param_groups})
            return step(*a, **kw)

        opt.step = recorded
        return opt

    monkeypatch.setattr(mmhh_engine, "build_optimizer", spying)
    return steps


@pytest.mark.parametrize("schedule", ["Stair_Step", "DANN_INV", "HashNet_Step"])
def test_each_schedule_reaches_the_optimizer_at_every_step(tmp_path, monkeypatch, colour_model, schedule):
    """MMHH.md: Stair_Step lr 0.5^floor(t / decay_step) from --lr with --weight_decay; DANN_INV
    3e-4 (1 + 3e-4 t)^-0.75 and HashNet_Step 3e-4 0.5^floor(t / 2000), both with weight decay
    5e-4; the hash layer at 10x. Read from the optimiser's groups at each of 5 steps. Catches a
    schedule computed but never applied, the multiplier dropped, and swapped weight decays."""
    steps = spy_optimizer(monkeypatch)
    mmhh.train_main(digits_args(tmp_path, "--num_iters", 5, "--lr", 1e-3, "--decay_step", 2, "--weight_decay", 0.01,
                                "--lr_schedule_type", schedule))
    want = {"Stair_Step": [1e-3 * 0.5 ** (t // 2) for t in range(5)],
            "DANN_INV": [3e-4 * (1 + 3e-4 * t) ** -0.75 for t in range(5)],
            "HashNet_Step": [3e-4] * 5}[schedule]
    decay = 0.01 if schedule == "Stair_Step" else 5e-4
    assert [s["backbone"][0] for s in steps] == pytest.approx(want, rel=1e-9)
    assert [s["hash_layer"][0] for s in steps] == pytest.approx([10 * lr for lr in want], rel=1e-9)
    assert all(s["backbone"][1] == s["hash_layer"][1] == decay for s in steps)


@pytest.mark.parametrize("loss_type, at_200", [("HashNet", math.sqrt(2)), ("DHN", 1.0)])
def test_the_hashnet_scale_rises_at_the_200th_forward(tmp_path, colour_model, loss_type, at_200):
    """MMHH.md: with --image_loss_type HashNet the tanh scale is sqrt(1 + 0.005 f), raised at
    every 200th forward f; DHN keeps 1. The log after 199 forwards shows 1, after 200 sqrt(2).
    Catches the scale never applied and a step one forward late or early."""
    mmhh.train_main(digits_args(tmp_path, "--num_iters", 201, "--log_every", 1, "--image_loss_type", loss_type))
    scales = {line["iteration"]: line["scale"] for line in log_lines(tmp_path / "log" / "empty_digits_digits" /
                                                                    "log.jsonl")}
    assert scales[199] == 1.0 and scales[200] == pytest.approx(at_200)


def record_epoch_orders(monkeypatch):
    """The item order the training loop hands its training feeder, one array per epoch."""
    orders, feeders = [], mmhh_common.feeders

    def recording(data, part, device, args, train=False):
        feeder = feeders(data, part, device, args, train)
        if train:
            batches = feeder.batches
            feeder.batches = lambda order, *a: (orders.append(np.array(order)), batches(order, *a))[1]
        return feeder

    monkeypatch.setattr(mmhh_common, "feeders", recording)
    return orders


def test_each_epoch_is_a_new_permutation_of_full_batches(tmp_path, monkeypatch, colour_model):
    """Batches of 400 from the 1,697 training digits: each epoch visits 4 x 400 distinct items,
    and the two epochs of 8 iterations visit them in different orders. Catches one order for
    every epoch and repeated items within an epoch."""
    orders = record_epoch_orders(monkeypatch)
    mmhh.train_main(digits_args(tmp_path, "--num_iters", 8, "--batch_size", 400))
    assert len(orders) == 2
    assert all(len(o) == 1600 and len(set(o.tolist())) == 1600 for o in orders)
    assert not np.array_equal(orders[0], orders[1])


# ---------------------------------------------------------------------------- memory bank

def colour_outputs(tmp_path, bits=8):
    """The colour network's outputs (N x K) for every training digit in index order, computed
    here: the same seed gives the run's initial weights, which a frozen run keeps."""
    args = digits_args(tmp_path, "--batch_size", 400)
    data = mmhh_common.data_for("digits", vars(mmhh_args.resolve(args)), None)[0]
    model = colour_network("SmallFc", bits, False, seed=0)
    feeder = mmhh_common.feeders(data, "train", "cpu", args)
    with torch.no_grad():
        return torch.cat([model(x) for _, x in feeder.batches(np.arange(len(feeder)), 400)])


def freeze(monkeypatch):
    """Every step of the run at learning rate 0 (--lr must be > 0): the model stays as it starts."""
    real = mmhh_engine.set_learning_rate
    monkeypatch.setattr(mmhh_engine, "set_learning_rate", lambda opt, lr: real(opt, 0.0))


def run_with_memory(tmp_path, monkeypatch, *extra):
    """A 4-iteration BatchInitMem run at lr 0 (the model stays as initialised) recording the
    memory's start codes and the epoch's item order; returns (start, order, final memory)."""
    started, memory = [], mmhh_engine.Memory
    freeze(monkeypatch)

    def start(codes, *a, **kw):
        started.append(codes.clone())
        return memory(codes, *a, **kw)

    monkeypatch.setattr(mmhh_engine, "Memory", start)
    orders = record_epoch_orders(monkeypatch)
    mmhh.train_main(digits_args(tmp_path, "--num_iters", 4, "--batch_size", 400, "--distance_type",
                                "MMHH", "--batch_type", "BatchInitMem", "--semi_init_momentum", 0.5, *extra))
    snapshot = torch.load(tmp_path / "snap" / "empty_digits_digits_iter_00004.pt", weights_only=True)
    return started[0], orders[0], snapshot["memory"]


@pytest.mark.parametrize("normalize", [False, True])
def test_memory_rows_follow_their_items_with_the_sqrt_momentum(tmp_path, monkeypatch, colour_model, normalize):
    """MMHH.md: after the warm-up (0 here) row i moves to beta_t m_i + (1 - beta_t) h_i, beta_t =
    beta0 + (1 - beta0) sqrt(t / T), renormalised with --norm_memory_batch; rows of items not
    visited keep their start. Recomputed here from the recorded start (random), the epoch's order
    (item order[p] is seen at iteration p // 400) and the network's outputs. Catches the momentum
    applied to the new outputs, a linear schedule, rows written at batch positions instead of item
    indices, the update dropped, and rows left unnormalised."""
    extra = ["--batch_params", 0, "--semi_init_type", "RANDOM"] + (["--norm_memory_batch"] if normalize else [])
    start, order, final = run_with_memory(tmp_path, monkeypatch, *extra)
    h = colour_outputs(tmp_path)
    want = F.normalize(start, dim=1) if normalize else start.clone()
    for p, i in enumerate(order):
        t = p // 400
        beta = 0.5 + 0.5 * math.sqrt(t / 4)
        row = beta * want[i] + (1 - beta) * h[i]
        want[i] = F.normalize(row, dim=0) if normalize else row
    torch.testing.assert_close(final, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(final[order], start[order])  # the update moved the visited rows


def test_model_initialised_memory_holds_the_networks_outputs(tmp_path, monkeypatch, colour_model):
    """--semi_init_type MODEL: the memory starts as the network's outputs on every training item,
    row i for item i. Catches a random start or rows in another order."""
    start, _, _ = run_with_memory(tmp_path, monkeypatch, "--batch_params", 2, "--semi_init_type", "MODEL")
    torch.testing.assert_close(start, colour_outputs(tmp_path))


def dropout_network(name, bits, pretrained, weights=None, seed=0):
    torch.manual_seed(seed)
    return HashModel(torch.nn.Sequential(MeanColour(), torch.nn.Dropout(0.5)), 3, bits)


@pytest.mark.parametrize("loss", [["--distance_type", "Hamming"],
                                  ["--distance_type", "MMHH", "--batch_type", "BatchInitMem", "--batch_params", 2],
                                  ["--distance_type", "DCH", "--eval_on", "val", "--gamma", 5]])
def test_resume_with_dropout_and_memory_gives_the_same_snapshot(tmp_path, monkeypatch, loss):
    """AlexNet and VGG train with dropout, drawn from the global generator; a run killed after its
    first epoch and resumed must see the same masks as an uninterrupted one (HashNet's loss on
    batch pairs, where the masks change the gradients), and the memory bank must come back as it
    was (MMHH with BatchInitMem); a DCH run on the validation split must read its split back and
    train on the same items. Catches dropout drawn from an unseeded generator state after a
    resume, the memory not restored, and a validation split redrawn or lost on resume."""
    monkeypatch.setattr(mmhh_common, "build_network", dropout_network)

    def args(annotation, *extra):
        return digits_args(tmp_path, "--num_iters", 8, "--batch_size", 400, "--annotation", annotation, *loss, *extra)

    mmhh.train_main(args("whole"))
    torch.manual_seed(12345)  # whatever the process drew before must not matter
    killed_at_first_checkpoint(monkeypatch, lambda: mmhh.train_main(args("cut")))
    torch.rand(7)
    mmhh.train_main(args("cut", "--resume"))
    whole = torch.load(tmp_path / "snap" / "whole_digits_digits_iter_00008.pt", weights_only=True)
    cut = torch.load(tmp_path / "snap" / "cut_digits_digits_iter_00008.pt", weights_only=True)
    for key, value in whole["model"].items():
        assert torch.equal(value, cut["model"][key]), key
    if "BatchInitMem" in loss:
        assert torch.equal(whole["memory"], cut["memory"])


# ----------------------------------------------------------------------- model and test

def test_hash_layer_weights_are_normal_not_just_of_the_right_spread():
    """MMHH.md: W ~ N(0, 0.01). A normal puts 4.55% of its mass beyond 2 sigma, a uniform of the
    same spread none (it ends at 1.73 sigma); 262,144 weights pin the share to +-0.3%. Catches a
    uniform (or truncated) initialisation that the std alone would pass."""
    torch.manual_seed(0)
    w = HashModel(torch.nn.Identity(), 4096, 64).hash_layer.weight
    beyond = (w.abs() > 0.02).float().mean().item()
    assert beyond == pytest.approx(0.0455, abs=0.003)
    assert abs(w.mean().item()) < 1e-4


def test_outputs_are_encoded_in_eval_mode():
    """Codes for testing come from the network in eval mode (dropout off, BatchNorm's running
    statistics), and training resumes in train mode. Catches a dropped model.eval()."""
    modes = []

    class Net(torch.nn.Module):
        def forward(self, x):
            modes.append(self.training)
            return x.flatten(1)[:, :4]

    class Items:
        def batches(self, order, batch_size):
            for s in range(0, len(order), batch_size):
                yield None, torch.as_tensor(order[s:s + batch_size]).float().view(-1, 1, 1, 1).repeat(1, 4, 1, 1)

    net = Net().train()
    out = mmhh_common.encode(net, Items(), np.arange(5), 2)
    assert out.shape == (5, 4) and modes == [False] * 3 and net.training


def naive_map_topk(q_out, d_out, ql, dl, by_scores, empty_zero):
    """MAP over the whole ranking (R > N here), one query at a time: ranked by q.v of the outputs
    (larger first) or by Hamming distance of the signs, ties by index; a query without relevant
    items counts 0 or is left out."""
    qc, dc = np.where(q_out >= 0, 1, -1), np.where(d_out >= 0, 1, -1)
    aps = []
    for i in range(len(qc)):
        key = (lambda j: (-float(np.dot(q_out[i], d_out[j])), j)) if by_scores else \
            (lambda j: (int((qc[i] != dc[j]).sum()), j))
        rel = [(ql[i] * dl[j]).sum() > 0 for j in sorted(range(len(dc)), key=key)]
        if sum(rel):
            hits = np.cumsum(rel)
            aps.append(sum(hits[k] / (k + 1) for k in range(len(rel)) if rel[k]) / sum(rel))
        elif empty_zero:
            aps.append(0.0)
    return float(np.mean(aps))


def test_map_topk_conventions_and_rank_by_reach_the_results(tmp_path, colour_model):
    """MAP@TopK as it reaches the results: --opt-test counts a query without relevant items 0,
    the default leaves it out; --rank_by scores orders by q.v, signs by Hamming distance. Each
    against a naive loop over the saved outputs, on lists where some query shares no label with
    the database. Catches the MAP@TopK conventions swapped, --rank_by ignored, and a radius other
    than --radius."""
    lists = write_lists(tmp_path / "nus", 21, (12, 12, 16), seed=3)
    mmhh.train_main(train_args(tmp_path, "--s_dataset", "nuswide_21", "--data_root", lists, "--annotation", "t",
                               "--test_sample_ratio", 1, "--radius", 1, "--hash_bit", 16))
    snap = tmp_path / "snap" / "t_nuswide_21_nuswide_21_iter_00003"
    results = {}
    for name, extra in (("opt", ["--opt-test"]), ("plain", []), ("signs", ["--rank_by", "signs"])):
        record = mmhh.test_main(mmhh_test_args(tmp_path, "--model_path", snap, "--radius", 1, "--annotation", name,
                                               "--output_path", tmp_path / name, *extra))
        results[name] = record["metrics"]
    files = {k: np.load(tmp_path / "plain" / f"{k}.npy") for k in ("query_outputs", "database_outputs",
                                                                    "query_labels", "database_labels")}
    q, d, ql, dl = files["query_outputs"], files["database_outputs"], files["query_labels"], files["database_labels"]
    assert ((ql @ dl.T) > 0).sum(1).min() == 0  # a query with no relevant item tells the conventions apart
    assert results["opt"]["map_topk"] == pytest.approx(naive_map_topk(q, d, ql, dl, True, True), abs=1e-12)
    assert results["plain"]["map_topk"] == pytest.approx(naive_map_topk(q, d, ql, dl, True, False), abs=1e-12)
    by_signs = naive_map_topk(q, d, ql, dl, False, False)
    assert results["signs"]["map_topk"] == pytest.approx(by_signs, abs=1e-12)
    assert by_signs != pytest.approx(results["plain"]["map_topk"])  # the two orders differ here
    assert results["plain"]["radius"] == 1
    ball = naive_ball(q, d, ql, dl, 1, False)
    assert results["plain"]["map_within_radius"] == pytest.approx(ball["map_within_radius"], abs=1e-12)


# ------------------------------------------------------------------- options of the README

def test_log_every_averages_the_iterations_since_the_last_line(tmp_path, colour_model):
    """--log_every 2 over 5 iterations: lines at 2, 4 and 5, each the mean of the per-iteration
    values of a --log_every 1 run of the same seed. Catches lines at other iterations, a
    running mean not reset, or the last partial window dropped."""
    every = {}
    for k in (1, 2):
        mmhh.train_main(digits_args(tmp_path / str(k), "--num_iters", 5, "--log_every", k))
        every[k] = log_lines(tmp_path / str(k) / "log" / "empty_digits_digits" / "log.jsonl")
    assert [line["iteration"] for line in every[2]] == [2, 4, 5]
    for line, window in zip(every[2], ([0, 1], [2, 3], [4])):
        for key in ("pair_loss", "quantization_loss", "loss"):
            assert line[key] == pytest.approx(np.mean([every[1][i][key] for i in window]), rel=1e-6), key


def test_pre_model_path_starts_from_the_snapshots_weights(tmp_path, colour_model, monkeypatch):
    """--pre_model_path: a run at lr 0 started from another run's snapshot ends with that
    snapshot's weights (not its own seed's initialisation). Catches the option ignored."""
    mmhh.train_main(digits_args(tmp_path, "--num_iters", 3, "--annotation", "first", "--seed", 1))
    first = tmp_path / "snap" / "first_digits_digits_iter_00003.pt"
    freeze(monkeypatch)
    mmhh.train_main(digits_args(tmp_path, "--num_iters", 3, "--annotation", "second", "--pre_model_path", str(first)))
    a = torch.load(first, weights_only=True)["model"]
    b = torch.load(tmp_path / "snap" / "second_digits_digits_iter_00003.pt", weights_only=True)["model"]
    assert all(torch.equal(a[key], b[key]) for key in ("hash_layer.weight", "hash_layer.bias"))
    fresh = colour_network("SmallFc", 8, False, seed=0).hash_layer.weight
    assert not torch.equal(fresh, b["hash_layer.weight"])
