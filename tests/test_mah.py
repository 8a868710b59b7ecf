"""MAH: loss, DCC, heads, the six scripts end to end, resume, bad inputs."""
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from utils import mah, runs
from utils.mah import adsh, engine
from utils.mah import args as mah_args
from utils.data.labels import label_matrix
from utils.data.loader import load_data, load_digits
from utils.models import CascadeHeads, FlatHeads, MAHNet, SmallConvNet
from test_failures import entry, one_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["cascade_CIFAR-10", "flat_CIFAR-10", "cascade_FLICKR", "flat_FLICKR", "cascade_NUS_WIDE", "flat_NUS_WIDE"]


# ---------------------------------------------------------------------------- loss

def test_adsh_loss_hand_computed():
    # B = 3 outputs, n = 5 database codes, c = 2 bits
    u = torch.tensor([[0.5, -0.5], [1.0, 0.0], [0.0, 0.25]])
    V = torch.tensor([[1., 1.], [1., -1.], [-1., 1.], [-1., -1.], [1., 1.]])
    S = torch.tensor([[1., -0.5, -0.5, -0.5, 1.], [-0.5, 1., -0.5, -0.5, -0.5], [1., 1., -0.5, -0.5, -0.5]])
    idx = torch.tensor([1, 0, 4])
    gamma, c, n, B = 3.0, 2, 5, 3
    pair = 0.0
    for i in range(B):
        for j in range(n):
            pair += (float(u[i] @ V[j]) - c * float(S[i, j])) ** 2
    quant = sum(float(((V[idx[i]] - u[i]) ** 2).sum()) for i in range(B))
    want = (pair + gamma * quant) / (n * B)
    got = adsh.ADSHLoss(gamma)(u, V, idx, V.T @ V, S @ V, float((S ** 2).sum()))
    assert got.item() == pytest.approx(want, rel=1e-6)
    # and its gradient is the one of the direct formula
    u1, u2 = u.clone().requires_grad_(), u.clone().requires_grad_()
    adsh.ADSHLoss(gamma)(u1, V, idx, V.T @ V, S @ V, float((S ** 2).sum())).backward()
    (((u2 @ V.T - c * S) ** 2).sum() + gamma * ((V[idx] - u2) ** 2).sum()).div(n * B).backward()
    torch.testing.assert_close(u1.grad, u2.grad)
    # the first pair by hand: u0.v0 = 0, target c * S = 2 -> (0 - 2)^2 = 4
    assert (float(u[0] @ V[0]) - c * float(S[0, 0])) ** 2 == 4.0


@pytest.mark.parametrize("single", [True, False])
def test_adsh_objective_is_the_original_calc_loss(single):
    """The logged objective against a direct evaluation of [||U V^T - c S||^2 + gamma
    ||V_sample - U||^2] / (m n) on the dense soft S. Catches a flipped cross term, a
    dropped r^2 of the dissimilar pairs, or another normalisation."""
    g = torch.Generator().manual_seed(1)
    n, m, c, gamma = 12, 5, 3, 7.0
    if single:
        db_labels = torch.eye(4)[torch.randint(0, 4, (n,), generator=g)]
    else:
        db_labels = (torch.rand(n, 4, generator=g) < 0.4).float()
    index = torch.randperm(n, generator=g)[:m]
    V = torch.where(torch.rand(n, c, generator=g) < 0.5, -1.0, 1.0)
    U = torch.rand(m, c, generator=g) * 2 - 1
    B = (db_labels[index] @ db_labels.T > 0).double()  # m x n, 1 when a label is shared
    r = float(B.sum() / (1 - B).sum())
    S = B * (1 + r) - r
    want = (((U.double() @ V.double().T - c * S) ** 2).sum() + gamma * ((V[index] - U).double() ** 2).sum()) / (m * n)
    # S V and sum S^2 as the training loop forms them, from the labels without the dense S
    SV = adsh.soft_times(db_labels[index], db_labels, V, r, single)
    similar = float(adsh.similar_times(db_labels[index], db_labels, torch.ones(n, 1), single).sum())
    got = adsh.adsh_objective(V, U, index, SV, similar + (m * n - similar) * r * r, gamma)
    assert got == pytest.approx(float(want), rel=1e-6)


class _Heads(torch.nn.Module):
    """Stands in for MAHNet: item i of the feeder gets the fixed outputs codes[k][i] of head k,
    and remembers whether it was called in eval mode."""

    def __init__(self, codes):
        super().__init__()
        self.codes, self.modes = codes, []

    def forward(self, x):
        self.modes.append(self.training)
        return [c[x] for c in self.codes]


class _Items:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def batches(self, order, batch_size):
        for start in range(0, len(order), batch_size):
            pos = torch.arange(start, min(start + batch_size, len(order)))
            yield pos, torch.as_tensor(order[start:start + batch_size])


def test_evaluation_uses_eval_mode_and_each_heads_own_codes():
    """Queries of classes 0, 1, 0, 1; database classes 0, 0, 0, 1, 1, 1. Head 0 (2 bits) and
    head 2 (8 bits) code every query like its class's database items (MAP 1); head 1 (4 bits)
    gives each query the other class's code, so its 3 relevant items come at ranks 4, 5, 6
    whatever the tie order: AP = (1/4 + 2/5 + 3/6) / 3 = 0.38333. Catches the auxiliary heads
    scored with head 0's signs or V, a dropped model.eval(), and a model left in eval mode."""
    from types import SimpleNamespace

    def code(bits, classes):
        book = torch.stack([torch.ones(bits), torch.cat([torch.ones(bits // 2), -torch.ones(bits - bits // 2)])])
        return book[torch.as_tensor(classes)]

    q_cls, db_cls = [0, 1, 0, 1], [0, 0, 0, 1, 1, 1]
    swapped = [1 - c for c in q_cls]
    model = _Heads([code(2, q_cls) * 0.3, code(4, swapped) * 0.7, code(8, q_cls)]).train()
    V = [code(2, db_cls), code(4, db_cls), code(8, db_cls)]
    data = SimpleNamespace(query=SimpleNamespace(labels=np.array(q_cls)),
                           database=SimpleNamespace(labels=np.array(db_cls)))
    result = engine.evaluate(model, _Items(4), V, data, batch_size=3)
    assert model.modes == [False, False] and model.training  # encoded in eval mode, then back to train
    for key in ("map", "map_tie_aware", "map_at_5000"):
        assert result[key] == pytest.approx(1.0)
        assert result["aux"][0][key] == pytest.approx((1 / 4 + 2 / 5 + 3 / 6) / 3)
        assert result["aux"][1][key] == pytest.approx(1.0)
    assert [a["bits"] for a in result["aux"]] == [4, 8]
    assert result["precision_at_5000"] == pytest.approx(0.5)  # 3 relevant of the 6 items


def test_auxiliary_lengths_follow_one_rule_outside_the_paper_preset():
    """The flat CIFAR-10 script's (48, 96) belong to the paper recipe at 6 bits only; catches
    the script's table leaking into other presets (the old cpu-small 6-bit cell)."""
    from argparse import Namespace

    paper = dict(aux_for={6: (48, 96)})
    assert mah_args.aux_lengths(Namespace(aux_bits=None, preset="paper", paper=paper), 6) == (48, 96)
    assert mah_args.aux_lengths(Namespace(aux_bits=None, preset="paper", paper=paper), 4) == (8, 16)
    assert mah_args.aux_lengths(Namespace(aux_bits=None, preset="cpu-small", paper=paper), 6) == (12, 24)
    assert mah_args.aux_lengths(Namespace(aux_bits="7,9", preset="cpu-small", paper=paper), 6) == (7, 9)


def soft(s, r):
    """The soft similarity, dense: similar pairs 1, dissimilar -r."""
    return s * (1 + r) - r


def test_soft_similarity_ratio():
    a = torch.tensor([[1., 0.], [0., 1.]])
    b = torch.tensor([[1., 0.], [1., 0.], [0., 1.], [1., 1.]])
    s = adsh.similarity(a, b)  # [[1,1,0,1],[0,0,1,1]]: 5 similar, 3 dissimilar
    assert adsh.soft_ratio(a, b, single_label=False) == pytest.approx(5 / 3)
    torch.testing.assert_close(soft(s, 5 / 3), s * (8 / 3) - 5 / 3)
    x = torch.randn(4, 3)
    torch.testing.assert_close(adsh.soft_times(a, b, x, 0.7, False), soft(s, 0.7) @ x)
    one_hot = torch.eye(3)[torch.tensor([0, 2, 1, 2, 0])]
    x = torch.randn(5, 2)
    dense = soft(adsh.similarity(one_hot[:2], one_hot), 0.5) @ x
    for single in (True, False):  # the factorised single-label product equals the dense one
        torch.testing.assert_close(adsh.soft_times(one_hot[:2], one_hot, x, 0.5, single), dense)
    assert adsh.soft_ratio(one_hot[:2], one_hot, True) == adsh.soft_ratio(one_hot[:2], one_hot, False)


# ----------------------------------------------------------------------------- DCC

def dcc_objective(V, U, sample_index, S, gamma):
    """The V-subproblem objective DCC decreases: ||V U^T - c S^T||^2 + gamma ||V_sample - U||^2
    up to constants (S: m x n soft similarity, dense)."""
    c = V.shape[1]
    return (V @ U.T - c * S.T).pow(2).sum() + gamma * (V[sample_index] - U).pow(2).sum()


def dcc_case(seed, n=6, m=3, c=3):
    g = torch.Generator().manual_seed(seed)
    db_labels = torch.nn.functional.one_hot(torch.randint(0, 3, (n,), generator=g), 3).float()
    sample_index = torch.randperm(n, generator=g)[:m]
    U = torch.rand(m, c, generator=g) * 2 - 1
    V = torch.where(torch.rand(n, c, generator=g) < 0.5, -1.0, 1.0)
    r = adsh.soft_ratio(db_labels[sample_index], db_labels, single_label=True)
    S = soft(adsh.similarity(db_labels[sample_index], db_labels), r)  # m x n
    return V, U, sample_index, db_labels, r, S


@pytest.mark.parametrize("seed", range(5))
def test_each_dcc_column_update_never_increases_the_objective(seed):
    V, U, index, db_labels, r, S = dcc_case(seed)
    gamma = 2.0
    before = dcc_objective(V, U, index, S, gamma)
    for k in range(V.shape[1]):
        adsh.dcc_update(V, U, index, db_labels[index], db_labels, r, gamma, True, columns=[k])
        after = dcc_objective(V, U, index, S, gamma)
        assert after <= before + 1e-4
        before = after


@pytest.mark.parametrize("seed", range(5))
def test_dcc_column_is_the_brute_force_best(seed):
    V, U, index, db_labels, r, S = dcc_case(seed, n=5)
    gamma = 0.5
    for k in range(V.shape[1]):
        best = min(dcc_objective(torch.cat([V[:, :k], torch.tensor(col).view(-1, 1), V[:, k + 1:]], 1),
                                      U, index, S, gamma).item()
                   for col in itertools.product([-1.0, 1.0], repeat=V.shape[0]))
        adsh.dcc_update(V, U, index, db_labels[index], db_labels, r, gamma, True, columns=[k])
        assert dcc_objective(V, U, index, S, gamma).item() == pytest.approx(best, rel=1e-5, abs=1e-4)


def test_dcc_maps_exact_zeros_to_plus_one_and_counts_them():
    V, U, index, db_labels, r, _ = dcc_case(0)
    zeros = adsh.dcc_update(V, torch.zeros_like(U), index, db_labels[index], db_labels, r, 1.0, True)
    assert zeros == V.numel() and (V == 1).all()


def test_label_codes_give_each_class_one_distinct_code():
    labels = torch.eye(10)[torch.arange(200) % 10]  # 200 x 10, one-hot
    V = adsh.label_codes(labels, adsh.class_codes(10, 4, seed=3))
    assert V.shape == (200, 4) and set(V.unique().tolist()) == {-1.0, 1.0}
    codes = V[:10]
    assert torch.equal(V, codes[torch.arange(200) % 10])  # a code per class
    assert len(codes.unique(dim=0)) == 10  # distinct: 10 classes fit in 16 corners
    assert torch.equal(codes, adsh.class_codes(10, 4, seed=3))  # from the seed alone
    assert not torch.equal(codes, adsh.class_codes(10, 4, seed=4))


def test_label_codes_of_multi_hot_rows_are_the_sign_of_their_classes_sum():
    B = adsh.class_codes(3, 6, seed=0)  # 3 x 6
    multi = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    V = adsh.label_codes(multi, B)
    # by hand: row 0 is B0 + B1, row 1 is B0 + B1 + B2, each coordinate's sign, 0 -> +1
    for row, classes in ((0, (0, 1)), (1, (0, 1, 2))):
        for j in range(6):
            total = sum(B[k, j].item() for k in classes)
            assert V[row, j].item() == (1.0 if total >= 0 else -1.0)
    assert (V[2] == 1).all()  # an unlabelled row: exact zeros become +1


def test_class_codes_pick_the_most_orthogonal_draw():
    # 2 classes in 2 bits: orthogonal codes (inner product 0) beat antipodal ones (-2); the first
    # draw of seed 4 is antipodal, so this fails if the first draw were kept
    first = adsh.class_codes(2, 2, seed=4, candidates=1)
    assert (first[0] @ first[1]).item() == -2
    codes = adsh.class_codes(2, 2, seed=4)
    assert (codes[0] @ codes[1]).item() == 0


def test_nested_class_codes_extend_the_next_shorter_code():
    books = adsh.nested_class_codes(10, (4, 16, 8), seed=7)  # lengths in any order
    assert [B.shape for B in books] == [(10, 4), (10, 16), (10, 8)]
    assert torch.equal(books[0], adsh.class_codes(10, 4, seed=7))  # the target head's codes as with labels
    assert torch.equal(books[2][:, :4], books[0]) and torch.equal(books[1][:, :8], books[2])
    assert torch.equal(books[2][:, 4:], adsh.class_codes(10, 4, seed=7 + 2))  # new bits from the head's seed
    assert len(books[2][:, 4:].unique(dim=0)) == 10  # the new bits alone are distinct codes too
    same = adsh.nested_class_codes(10, (4, 8, 8), seed=7)
    assert torch.equal(same[1], same[2])  # equal lengths: nothing to add


# ---------------------------------------------------------------------------- heads

def test_flat_and_cascade_shapes_and_chain():
    f = torch.randn(4, 10)
    flat = FlatHeads(10, (4, 8, 16))
    assert [o.shape for o in flat(f)] == [(4, 4), (4, 8), (4, 16)]
    for got, head in zip(flat(f), flat.heads):  # y_k = tanh(W_k f + b_k), each from the features
        torch.testing.assert_close(got, torch.tanh(f @ head.weight.T + head.bias))
    cascade = CascadeHeads(10, (4, 8, 16))
    out = cascade(f)
    assert [o.shape for o in out] == [(4, 4), (4, 8), (4, 16)]
    z2 = cascade.first(f)  # long code first, from the features
    z1 = cascade.second(z2)  # no nonlinearity between stages
    z0 = cascade.third(z1)
    for got, want in zip(out, (z0, z1, z2)):
        torch.testing.assert_close(got, torch.tanh(want))
    assert cascade.first.in_features == 10 and cascade.second.in_features == 16 and cascade.third.in_features == 8
    net = MAHNet(SmallConvNet(), SmallConvNet().out_features, (4, 8, 16), cascade=True)
    assert [o.shape for o in net(torch.randn(2, 3, 32, 32))] == [(2, 4), (2, 8), (2, 16)]


# ------------------------------------------------------------------ scripts end to end

def run_script(script, *args, cwd=REPO):
    return subprocess.run([sys.executable, f"{script}.py", "--preset", "smoke", "--gpu", "cpu", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def list_dataset(root, classes, n_db=40, n_query=10, multi=True, style="mah"):
    """Tiny image-list data set: 32x32 PNGs whose colour follows the first label."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    rows = {}
    for part, n in (("database", n_db), ("test", n_query), ("train", n_db)):
        labels = (rng.random((n, classes)) < 0.3).astype(int) if multi else rng.integers(0, classes, n)
        names = []
        for i in range(n):
            name = f"img/{part}_{i}.png"
            first = labels[i].argmax() if multi else labels[i]
            Image.fromarray(np.full((32, 32, 3), 20 * first % 256, np.uint8)).save(os.path.join(root, name))
            names.append(name)
        rows[part] = (names, labels)
    if style == "mah":
        for part in ("database", "test"):
            names, labels = rows[part]
            with open(os.path.join(root, f"{part}_img.txt"), "w") as f:
                f.writelines(n + "\n" for n in names)
            with open(os.path.join(root, f"{part}_label.txt"), "w") as f:
                f.writelines(" ".join(map(str, np.atleast_1d(l))) + "\n" for l in labels)
    else:
        for part, (names, labels) in rows.items():
            with open(os.path.join(root, f"{part}.txt"), "w") as f:
                f.writelines(f"{n} {' '.join(map(str, np.atleast_1d(l)))}\n" for n, l in zip(names, labels))
    return root


def check_results(out, dataset, method, bits):
    with open(os.path.join(out, "results", f"{dataset}_{method}_{bits}bits.json")) as f:
        record = json.load(f)
    assert 0 <= record["metrics"]["map"] <= 1 and record["preset"] == "smoke"
    assert {"map", "map_tie_aware", "map_at_5000", "precision_at_5000"} <= set(record["metrics"])
    assert [a["bits"] for a in record["metrics"]["aux"]] == record["aux_bits"]
    assert record["database_order"] == "seeded random"
    lines = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    mine = [line for line in lines if line["bits"] == bits]
    assert [line["iteration"] for line in mine] == [0, 1] and mine[-1]["metrics"] == record["metrics"]
    assert all(len(line["objective"]) == 3 and all(np.isfinite(line["objective"])) for line in mine)
    return record


def check_retrieval(record, label_of, n_query):
    """The kept retrieval examples: the first queries, ten items each in non-decreasing
    distance, each marked relevant exactly when it shares the query's class (an int) or a
    label (a multi-hot row), looked up here by the item's name. Catches names that do not
    point at the ranked items, relevance by another rule, or an unsorted top ten."""
    shown = record["retrieval"]
    assert len(shown) == min(5, n_query)
    for example in shown:
        assert len(example["top"]) == 10 and len(set(map(str, example["top"]))) == 10
        assert example["distance"] == sorted(example["distance"]) and example["tied"] >= 10
        assert 0 <= example["distance"][-1] <= record["bits"]
        query = label_of(example["query"])
        for name, relevant in zip(example["top"], example["relevant"]):
            item = label_of(name)
            assert relevant == bool(np.any(query & item) if np.ndim(item) else query == item)


def list_labels(root):
    """name -> multi-hot row of the MAH list files that list_dataset wrote."""
    table = {}
    for part in ("database", "test"):
        names = open(os.path.join(root, f"{part}_img.txt")).read().split()
        rows = np.loadtxt(os.path.join(root, f"{part}_label.txt"), dtype=int, ndmin=2)
        table.update(zip(names, rows))
    return table.__getitem__


@pytest.mark.parametrize("script", SCRIPTS[:2])
def test_cifar_scripts_on_digits(script, tmp_path):
    result = run_script(script, "--dataset", "digits", "--bits", "4,6", "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    method = "MAH-" + script.split("_")[0]
    labels = load_digits()[1]  # the item names of digits are rows of this array
    split = load_data("digits", split_file=str(tmp_path / "split.json"))
    for bits in (4, 6):
        record = check_results(str(tmp_path), "digits", method, bits)
        assert record["weights"] is None  # the small convnet from scratch
        check_retrieval(record, labels.__getitem__, 5)
        check_pr_curve(record["metrics"]["pr_by_radius"], bits, split.query.labels, split.database.labels)
    assert os.path.exists(tmp_path / "split.json") and os.path.exists(tmp_path / "checkpoint.pt")


def check_pr_curve(pr, bits, ql, dl):
    """The results file's precision-recall curve of the Hamming ball: one point per radius
    0..bits of the target head (an auxiliary head has 2 or 4 times the bits), recall growing
    to 1 at radius bits where the ball is the whole database and precision is each query's
    share of relevant items, counted here from the labels. Catches another head's codes, the
    curve cut short, or the two lists swapped."""
    assert len(pr["precision"]) == len(pr["recall"]) == bits + 1
    assert np.all(np.diff(pr["recall"]) >= -1e-12) and pr["recall"][-1] == pytest.approx(1.0)
    share = np.mean([(dl == c).mean() for c in ql])
    assert pr["precision"][-1] == pytest.approx(share)


def test_pretrained_mobilenet_v2_run_records_its_weights(tmp_path):
    """An ImageNet MobileNetV2 run (torchvision's weights, or offline the packaged ones) names
    the weights in its results (the small convnet from scratch names none: in
    test_cifar_scripts_on_digits). Catches results that do not say which weights produced them."""
    result = run_script("cascade_CIFAR-10", "--dataset", "digits", "--bits", "4", "--backbone", "mobilenet_v2",
                        "--pretrained", "--output-dir", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    weights = check_results(str(tmp_path / "m"), "digits", "MAH-cascade", 4)["weights"]
    assert weights["source"] == "torchvision MobileNet_V2_Weights.IMAGENET1K_V1" or \
        weights["sha256"] == "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"


@pytest.mark.parametrize("script", SCRIPTS[2:])
def test_list_scripts_on_generated_multi_label_lists(script, tmp_path):
    dataset, classes = ("flickr25k", 38) if "FLICKR" in script else ("nuswide21", 21)
    root = list_dataset(str(tmp_path / "data"), classes)
    out = str(tmp_path / "run")
    result = run_script(script, "--data-root", root, "--output-dir", out, "--workers", "0")
    assert result.returncode == 0, result.stderr
    bits = {"cascade_FLICKR": 8, "flat_FLICKR": 6, "cascade_NUS_WIDE": 8, "flat_NUS_WIDE": 4}[script]
    check_retrieval(check_results(out, dataset, "MAH-" + script.split("_")[0], bits), list_labels(root), 10)


def test_single_label_hashnet_lists(tmp_path):
    root = list_dataset(str(tmp_path / "data"), 100, multi=False, style="hashnet")
    out = str(tmp_path / "run")
    result = run_script("flat_CIFAR-10", "--dataset", "imagenet100", "--data-root", root, "--output-dir", out,
                        "--workers", "0", "--bits", "8")
    assert result.returncode == 0, result.stderr
    check_results(out, "imagenet100", "MAH-flat", 8)


# ------------------------------------------------------------------------- resume

def smoke_args(out, **extra):
    parser = mah.get_args_parser()
    parser.set_defaults(script="test", arch="cascade", dataset="digits", paper=dict(
        bits="4", aux_for={}, head_weights="4,2,1", gamma=200, max_iter=41, epochs=3, batch_size=64,
        num_samples=2000, eval_every=1))
    argv = ["--preset", "smoke", "--gpu", "cpu", "--max-iter", "4", "--eval-every", "4", "--output-dir", out]
    return parser.parse_args(argv + [f"--{k.replace('_', '-')}={v}" for k, v in extra.items()])


def test_killed_run_resumes_to_the_same_codes_and_map(tmp_path, monkeypatch):
    whole = str(tmp_path / "whole")
    mah.main(smoke_args(whole))
    killed = str(tmp_path / "killed")
    saves = []
    real_save = runs.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        saves.append(state["iteration"])
        if len(saves) == 2:
            raise KeyboardInterrupt  # killed right after the second checkpoint

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    monkeypatch.setattr(sys, "argv", ["cascade_CIFAR-10.py", "--output-dir", killed])
    with pytest.raises(KeyboardInterrupt):
        mah.main(smoke_args(killed))
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    assert not os.path.exists(os.path.join(killed, "results"))
    monkeypatch.setattr(sys, "argv", ["cascade_CIFAR-10.py", "--resume", killed])
    resume_args = mah.get_args_parser().parse_args(["--resume", killed])
    resume_args.paper, resume_args.script = {}, "test"
    mah.main(resume_args)
    a = torch.load(os.path.join(whole, "checkpoint.pt"), weights_only=True)
    b = torch.load(os.path.join(killed, "checkpoint.pt"), weights_only=True)
    assert a["iteration"] == b["iteration"] == 3
    for va, vb in zip(a["V"], b["V"]):
        assert torch.equal(va, vb)
    ra = json.load(open(os.path.join(whole, "results", "digits_MAH-cascade_4bits.json")))
    rb = json.load(open(os.path.join(killed, "results", "digits_MAH-cascade_4bits.json")))
    assert ra["metrics"] == rb["metrics"]
    # the record names the command that started the run, and the one that finished it
    assert rb["command"] == f"python cascade_CIFAR-10.py --output-dir {killed}"
    assert rb["resumed_by"] == f"python cascade_CIFAR-10.py --resume {killed}"
    assert "resumed_by" not in ra and "command" not in rb["args"]


@pytest.mark.parametrize("init,hold", [("labels", 4), ("labels", 2), ("nested", 4)])
def test_codes_are_held_as_initialised_then_learned(tmp_path, init, hold):
    out = str(tmp_path / "held")
    mah.main(smoke_args(out, v_init=init, v_hold=hold))  # four iterations
    ckpt = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)
    data = load_data("digits", None, None, None, "dpsh", 0, split_file=os.path.join(out, "split.json"))
    labels = label_matrix(data.database.labels, data.info.classes, "cpu")  # n x 10
    seed, lengths = 4 * 10_007, (4, 8, 16)  # seed 0, c0 = 4
    books = ([adsh.class_codes(10, c, seed + k) for k, c in enumerate(lengths)] if init == "labels"
             else adsh.nested_class_codes(10, lengths, seed))
    same = [torch.equal(V, adsh.label_codes(labels, B)) for V, B in zip(ckpt["V"], books)]
    assert all(same) if hold == 4 else not all(same)  # DCC ran in iterations 2 and 3


# ---------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("args,message", [
    (["--bits", "0"], "code lengths must be 1 to 64"),
    (["--bits", "65"], "code lengths must be 1 to 64"),
    (["--bits", "x"], "--bits must be comma-separated integers"),
    (["--bits", "8", "--aux-bits", "4,16"], "auxiliary codes must be at least as long as the target"),
    # the cascade's c2 feeds c1: a longer c1 would feed a short code into a long one
    (["--bits", "4", "--aux-bits", "16,8"], "c1 must not be longer than c2; give --aux-bits 8,16"),
    (["--data-root", "/nonexistent/cifar"], "does not exist"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--gpu", "7x"], "--gpu must be a CUDA device number or 'cpu'"),
    (["--head-weights", "1,2"], "--head-weights (w0,w1,w2) needs 3 values"),
    (["--v-hold", "3"], "holding needs --v-init labels or nested"),
    (["--v-hold", "-1", "--v-init", "labels"], "holding needs --v-init labels or nested and a count of at least 0"),
    (["--resume", "/nonexistent/run"], "run record /nonexistent/run/run.json is missing"),
])
def test_bad_inputs_give_one_line_errors(args, message, monkeypatch):
    # in this process, through the script's own error handling (utils.errors.run); the
    # subprocess runs of test_failures.py check that path in processes of their own
    code, _, err = entry("cascade_CIFAR-10", "--preset", "smoke", "--gpu", "cpu", *args, monkeypatch=monkeypatch)
    one_error(code, err, message)


def test_offline_pretrained_weights_give_a_clear_error(monkeypatch, tmp_path):
    import torchvision

    from utils.errors import UserError
    from utils.models import build_backbone

    def offline(weights=None):
        if weights is not None:
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
        return torchvision.models.resnet18.__wrapped__(weights=None)

    offline.__wrapped__ = torchvision.models.resnet18
    monkeypatch.setattr(torchvision.models, "resnet18", offline)
    with pytest.raises(UserError, match="--weights PATH .* or pass --no-pretrained"):
        build_backbone("resnet18", pretrained=True)
    # a local weights file is the offline way in
    path = str(tmp_path / "resnet18.pth")
    torch.save(torchvision.models.resnet18.__wrapped__(weights=None).state_dict(), path)
    model, features = build_backbone("resnet18", pretrained=True, weights_path=path)
    assert features == 512 and model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 512)
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a resnet18 state_dict"):
        build_backbone("resnet18", pretrained=True, weights_path=str(tmp_path / "bad.pth"))


def test_cpu_pretrained_preset_keeps_the_zero_start_and_the_scripts_weights():
    """cpu-pretrained may change the optimiser and schedule but must keep V from zeros
    with no hold and each script's head weights, gamma, batch and sample; 41 outer iterations
    for every script so that flat and cascade get the same budget. Catches a hold or class-code
    start slipping in (the 4-bit comparison would be about something else), or FLICKR's 300
    and 100 iterations left in."""
    parser = mah.get_args_parser()
    parser.set_defaults(script="t", arch="flat", dataset="flickr25k", paper=dict(
        bits="6", aux_for={6: (8, 16)}, head_weights="4,2,1", gamma=200, max_iter=300, epochs=1, batch_size=100,
        num_samples=2000, eval_every=10))
    args = mah_args.resolve(parser.parse_args(["--preset", "cpu-pretrained", "--bits", "4"]))
    assert (args.v_init, args.v_hold, args.optimizer, args.lr, args.lr_steps, args.max_iter, args.epochs) == (
        "zeros", 0, "adam", 1e-4, [30], 41, 1)
    assert (args.backbone, args.pretrained, args.resize, args.crop, args.augment) == ("mobilenet_v2", True, 64, 64,
                                                                                      True)
    assert (args.head_weights, args.gamma, args.batch_size, args.num_samples) == ([4.0, 2.0, 1.0], 200, 100, 2000)
    assert mah_args.aux_lengths(args, 6) == (12, 24)  # the one rule outside the paper preset, not the script's 8,16


def test_cpu_paper_preset_keeps_the_papers_recipe():
    """cpu-paper changes only the backbone (ImageNet MobileNetV2), the input size and the epochs;
    catches a code start or hold, another optimiser or lr schedule, or the script's sizes
    replaced, any of which would change what its 4-bit comparison is about."""
    parser = mah.get_args_parser()
    paper = dict(bits="4", aux_for={4: (8, 16)}, head_weights="4,2,1", gamma=200, max_iter=41, epochs=3, batch_size=64,
                 num_samples=2000, eval_every=1)
    parser.set_defaults(script="t", arch="cascade", dataset="cifar10", paper=paper)
    args = mah_args.resolve(parser.parse_args(["--preset", "cpu-paper"]))
    assert (args.v_init, args.v_hold, args.optimizer, args.lr, args.lr_steps) == ("zeros", 0, "sgd", 1e-3,
                                                                                   [10, 20, 30, 40, 50])
    assert (args.backbone, args.pretrained, args.resize, args.crop, args.augment, args.epochs) == (
        "mobilenet_v2", True, 64, 64, False, 1)
    assert (args.head_weights, args.gamma, args.max_iter, args.batch_size, args.num_samples) == (
        [4.0, 2.0, 1.0], 200, 41, 64, 2000)
