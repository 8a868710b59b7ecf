"""MMHH: losses by hand, memory and schedules, the two scripts end to end, resume, the released
code's defaults, overrides, old flags and output files, bad inputs."""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from utils import mmhh
from utils.mmhh import args as mmhh_args
from utils.mmhh import common as mmhh_common
from utils.mmhh import engine as mmhh_engine
from utils.mmhh import memory as mem
from utils.mmhh import optim
from utils.data.feeder import Feeder
from utils.errors import UserError
from utils.data.labels import similarity
from utils.mmhh.losses import hashnet_loss, mmhh_loss, parse_margin_params, quantization_loss, similar_weight
from utils.models import HashModel, SmallConvNet
from test_failures import entry, one_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARGINS = parse_margin_params("0.5:0.8:1.0:1.0:2.0")

# The two command lines of the released code's README (spec MMHH.md), verbatim.
TRAIN_LINE = ('--gpu_id=0 --s_dataset="coco_80" --hash_bit=48 --annotation="MMHH-train" --loss_lambda=0.001 '
              '--num_iters=1000 --image_network="AlexNetFc" --batch_size=48 --radius 2 --distance_type "MMHH" '
              '--similar_weight "1" --lr 0.0001 --decay_step 200 --gamma 10.0 --opt-test True')
TEST_LINE = ('--gpu_id=0 --dataset="coco_80" --model_path "../snapshot/hash/MMHH-train_coco_80_coco_80_iter_01000" '
             '--batch_size=48 --radius 2 --opt-test --annotation="MMHH-test" --test_sample_ratio 1.0')


# --------------------------------------------------------------------------- losses

def test_mmhh_loss_by_hand_all_four_margin_cases_auto_weight_and_a_zero_row():
    a, b = [1., 1., 1., 1.], [1., 1., 1., -1.]
    e, f = [1., -1., -1., -1.], [-1., -1., -1., -1.]
    H1 = torch.tensor([a, b, [0., 0., 0., 0.]])  # the last row is all zero
    H2 = torch.tensor([a, e, f])
    S = torch.tensor([[1., 0., 1.], [1., 1., 0.], [0., 1., 0.]])
    # K = 4, d = 2 (1 - cos): worked out by hand; the zero row is at K/2 = 2 from everything
    d = [[0, 3, 4], [1, 2, 3], [2, 2, 2]]
    w_s = similar_weight("auto", S, configured=7.0)
    assert float(w_s) == pytest.approx(4 / 5)  # 4 dissimilar / 5 similar pairs
    gamma = 2.0
    want = 0.0
    for i in range(3):
        for j in range(3):
            inside = d[i][j] <= 2  # margin 2.0
            if S[i, j]:  # sim_in 0.5 inside, sim_out 1.0 outside: -log p, p = gamma / 2 / (d + gamma)
                want += float(w_s) * (0.5 if inside else 1.0) * (math.log(2) + math.log(1 + d[i][j] / gamma))
            else:  # dis_in 0.8, dis_out 1.0: -log(1 - p)
                want += (0.8 if inside else 1.0) * math.log((d[i][j] + gamma) / (d[i][j] + gamma / 2))
    want /= 9
    # one term spelled out: pair (0, 0) is similar at d = 0 inside the margin -> 0.8 * 0.5 * log 2
    assert float(w_s) * 0.5 * math.log(2) == pytest.approx(0.4 * math.log(2))
    h = H1.clone().requires_grad_()
    got = mmhh_loss(h, H2, S, gamma, MARGINS, w_s)
    assert got.item() == pytest.approx(want, rel=1e-6)
    got.backward()
    assert torch.isfinite(h.grad).all()  # the zero row gives no NaN


def test_similar_weight_number_config_and_auto_without_similar_pairs():
    S = torch.zeros(2, 3)
    assert similar_weight("5", S, 1.0) == 5.0
    assert similar_weight("config", S, 5.0) == 5.0
    assert float(similar_weight("auto", S, 5.0)) == 1.0  # no similar pair: the weight does not matter


def test_pair_similarity_counts_zero_rows_dissimilar():
    L = torch.tensor([[1., 0., 1.], [0., 0., 0.], [0., 1., 1.]])
    torch.testing.assert_close(similarity(L, L), torch.tensor([[1., 0., 1.], [0., 0., 0.], [1., 0., 1.]]))


def test_hashnet_loss_against_the_direct_formula_including_large_inputs():
    g = torch.Generator().manual_seed(0)
    H1, H2 = torch.rand(5, 8, generator=g) * 2 - 1, torch.rand(6, 8, generator=g) * 2 - 1
    H1[0], H2[0], H2[1] = 1.0, 1.0, -1.0  # x = +-8 * scale at these pairs
    S = (torch.rand(5, 6, generator=g) < 0.3).float()
    for scale in (1.0, 30.0):  # |x| up to 8 * 30 = 240: e^x overflows float32
        x = (scale * (H1.double() @ H2.double().T)).numpy()
        s = S.double().numpy()
        # log(1 + e^x) in float64, by its asymptote x where e^x would overflow
        softplus = np.where(x > 30, x, np.log1p(np.exp(np.minimum(x, 30))))
        pair = softplus - s * x
        w = 3.0
        want = (w * (s * pair).sum() + ((1 - s) * pair).sum()) / (w * s.sum() + (1 - s).sum())
        got = hashnet_loss(H1, H2, S, scale, w)
        assert torch.isfinite(got) and got.item() == pytest.approx(want, rel=1e-5)


def test_quantization_loss_by_hand_and_without_overflow():
    H = torch.tensor([[1.0, 0.0], [0.5, -2.0]])
    # log cosh(|h| - 1): 0, log cosh 1, log cosh 0.5, log cosh 1; mean over the 2 rows
    want = (0 + 2 * math.log(math.cosh(1)) + math.log(math.cosh(0.5))) / 2
    assert quantization_loss(H).item() == pytest.approx(want, rel=1e-6)
    big = quantization_loss(torch.tensor([[200.0]]))
    assert big.item() == pytest.approx(199 - math.log(2), rel=1e-6)


def test_margin_params_parse_and_reject():
    assert MARGINS == dict(sim_in=0.5, dis_in=0.8, sim_out=1.0, dis_out=1.0, margin=2.0)
    for bad in ("1:2", "a:b:c:d:e", ""):
        with pytest.raises(ValueError, match="five numbers"):
            parse_margin_params(bad)


# ------------------------------------------------------------- memory and schedules

def test_memory_momentum_schedule_values():
    assert mem.memory_momentum(0, 300, 0.5, 1000) == 0.0
    assert mem.memory_momentum(299, 300, 0.5, 1000) == 0.0
    assert mem.memory_momentum(300, 300, 0.5, 1000) == pytest.approx(0.5 + 0.5 * math.sqrt(0.3))
    assert mem.memory_momentum(640, 300, 0.2, 1000) == pytest.approx(0.2 + 0.8 * 0.8)
    assert mem.memory_momentum(1000, 300, 0.5, 1000) == pytest.approx(1.0)


def test_memory_overwrites_in_the_warm_up_then_blends():
    codes, labels = torch.zeros(4, 2), torch.eye(4)
    m = mem.Memory(codes.clone(), labels, warmup=2, beta0=0.5, total=8, normalize=False)
    h = torch.tensor([[1.0, -1.0]])
    assert m.operand(1, h, labels[:1])[0] is h  # warm-up: pairs within the batch
    m.update(1, torch.tensor([2]), h)
    torch.testing.assert_close(m.codes[2], torch.tensor([1.0, -1.0]))  # overwritten
    assert m.operand(2, h, labels[:1])[0] is m.codes  # after it: the memory
    m.update(2, torch.tensor([2]), torch.tensor([[-1.0, 1.0]]))
    beta = 0.5 + 0.5 * math.sqrt(2 / 8)
    torch.testing.assert_close(m.codes[2], torch.tensor([beta - (1 - beta), -beta + (1 - beta)]))
    n = mem.Memory(torch.tensor([[3.0, 4.0]]), labels[:1], warmup=0, beta0=0.0, total=4, normalize=True)
    torch.testing.assert_close(n.codes, torch.tensor([[0.6, 0.8]]))
    n.update(0, torch.tensor([0]), torch.tensor([[0.0, 2.0]]))
    torch.testing.assert_close(n.codes, torch.tensor([[0.0, 1.0]]))


def test_learning_rate_schedules_and_multipliers():
    assert [optim.learning_rate("Stair_Step", t, 1e-3, 200) for t in (0, 199, 200, 450)] == \
        [1e-3, 1e-3, 5e-4, 2.5e-4]
    assert optim.learning_rate("HashNet_Step", 3999, 3e-4, 200) == pytest.approx(1.5e-4)
    assert optim.learning_rate("DANN_INV", 1000, 3e-4, 200) == pytest.approx(3e-4 * 1.3 ** -0.75)
    assert optim.weight_decay("Stair_Step", 0.1) == 0.1 and optim.weight_decay("DANN_INV", 0.1) == 5e-4
    model = HashModel(SmallConvNet(4), 32, 8)
    opt = optim.build_optimizer(model, "sgd", 1e-3, 5e-4)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    optim.set_learning_rate(opt, 2e-4)
    assert {g["name"]: g["lr"] for g in opt.param_groups} == pytest.approx({"backbone": 2e-4, "hash_layer": 2e-3})


def test_continuation_scale_steps_every_200_forwards():
    assert mmhh_engine.continuation_scale(0) == 1.0 and mmhh_engine.continuation_scale(198) == 1.0
    assert mmhh_engine.continuation_scale(199) == pytest.approx(math.sqrt(2))  # forward 200: 1 + 0.005 * 200
    assert mmhh_engine.continuation_scale(399) == pytest.approx(math.sqrt(3))


def test_hash_layer_init():
    torch.manual_seed(0)
    layer = HashModel(torch.nn.Identity(), 4096, 64).hash_layer
    assert abs(layer.weight.std().item() - 0.01) < 5e-4 and not layer.bias.any()


# -------------------------------------------------------------------- command lines

def test_the_original_command_lines_parse():
    a = mmhh.get_train_parser().parse_args(shlex.split(TRAIN_LINE))
    assert (a.gpu_id, a.s_dataset, a.hash_bit, a.annotation, a.loss_lambda, a.num_iters) == \
        ("0", "coco_80", 48, "MMHH-train", 0.001, 1000)
    assert (a.image_network, a.batch_size, a.radius, a.distance_type, a.similar_weight_type) == \
        ("AlexNetFc", 48, 2, "MMHH", "1")
    assert (a.lr, a.decay_step, a.gamma, a.opt_test) == (1e-4, 200, 10.0, True)
    t = mmhh.get_test_parser().parse_args(shlex.split(TEST_LINE))
    assert (t.dataset, t.batch_size, t.radius, t.opt_test, t.test_sample_ratio) == ("coco_80", 48, 2, True, 1.0)
    assert t.model_path.endswith("MMHH-train_coco_80_coco_80_iter_01000")
    h = mmhh.get_train_parser().parse_args("--hash-bit 16 --similar-weight auto --opt-test False".split())
    assert (h.hash_bit, h.similar_weight_type, h.opt_test) == (16, "auto", False)
    assert mmhh.get_train_parser().parse_args([]).opt_test is False


# ------------------------------------------------------------------------ end to end

def script(name, *args, cwd=REPO):
    return subprocess.run([sys.executable, os.path.join(REPO, name), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def read_results(folder):
    found = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if f.endswith(".json")
             and os.path.basename(d) == "results"]
    assert len(found) == 1, found
    with open(found[0]) as f:
        return json.load(f)


def test_snapshot_round_trip_gives_the_same_map(tmp_path, monkeypatch):
    # training and the --opt-test run in this process; test_mmhh.py in a process of its own
    common = ["--gpu_id", "cpu", "--log_dir", tmp_path / "log", "--radius", "2"]
    code, _, err = entry("train_mmhh", "--s_dataset", "digits", "--preset", "smoke", "--hash_bit", "12",
                         "--annotation", "rt", "--snap_path", tmp_path / "snap", "--test_sample_ratio", "0.5",
                         "--seed", "3", "--distance_type", "MMHH", "--test_output_dir", tmp_path / "out", *common,
                         monkeypatch=monkeypatch)
    assert code == 0, err
    trained = read_results(tmp_path / "log" / "rt_digits_digits")["metrics"]
    snap = tmp_path / "snap" / "rt_digits_digits_iter_00003"
    assert (tmp_path / "snap" / "rt_digits_digits_iter_00003.pt").exists()
    out = script("test_mmhh.py", "--model_path", snap, "--test_sample_ratio", "0.5", "--annotation", "again",
                 "--output_path", tmp_path / "codes", *common)
    assert out.returncode == 0, out.stderr
    tested = read_results(tmp_path / "log" / "again")["metrics"]
    assert tested == trained  # same subset (ratio and seed from the snapshot), same codes, same metrics
    assert trained["queries"] == 50 and trained["database"] == 848
    codes = np.load(tmp_path / "codes" / "query_codes.npy")
    assert codes.shape == (50, 12) and set(np.unique(codes)) <= {-1.0, 1.0}
    code, out, _ = entry("test_mmhh", "--model_path", f"{snap}.pt", "--radius", "0", "--opt-test", *common[:4],
                         monkeypatch=monkeypatch)
    assert code == 0 and "MAP@TopK (full ranking)" in out


@pytest.fixture(scope="module")
def coco_lists(coco_mini, tmp_path_factory):
    """HashNet-style list files over the real COCO images: 30 queries, 60 train, the rest database."""
    root = tmp_path_factory.mktemp("coco_lists")
    lines = (coco_mini / "all.txt").read_text().splitlines()
    for name, part in (("test", lines[:30]), ("train", lines[30:90]), ("database", lines[30:])):
        (root / f"{name}.txt").write_text("\n".join(part) + "\n")
    return root


@pytest.mark.parametrize("extra", [["--distance_type", "MMHH", "--batch_type", "BatchInitMem", "--batch_params", "1",
                                    "--norm_memory_batch", "--similar_weight", "config"],
                                   ["--distance_type", "Hamming", "--image_loss_type", "HashNet", "--loss_lambda", "0",
                                    "--similar_weight", "auto", "--lr_schedule_type", "DANN_INV"]])
def test_smoke_on_the_real_coco_fixture(coco_mini, coco_lists, tmp_path, extra):
    out = script("train_mmhh.py", "--s_dataset", "coco_80", "--data_root", coco_lists, "--image_root",
                 coco_mini, "--preset", "smoke", "--gpu_id", "cpu", "--workers", "0", "--log_dir",
                 tmp_path, "--snap_path", tmp_path, "--test_output_dir", tmp_path / "out", "--test_sample_ratio", "1",
                 *extra)
    assert out.returncode == 0, out.stderr
    record = read_results(tmp_path)
    assert record["dataset"] == "coco80" and record["metrics"]["topk"] == 5000
    assert record["metrics"]["queries"] == 30 and record["metrics"]["database"] == 129
    assert all(math.isfinite(v) for v in record["metrics"].values() if isinstance(v, float))
    log = [json.loads(line) for line in open(tmp_path / "empty_coco_80_coco_80" / "log.jsonl")]
    assert log[-1]["iteration"] == 3 and math.isfinite(log[-1]["loss"])


def killed_at_first_checkpoint(monkeypatch, train):
    """train(), stopped as Ctrl-C stops it right after train_mmhh.py's first checkpoint is written."""
    real = mmhh_engine.save_checkpoint

    def killed(path, state):
        real(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(mmhh_engine, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        train()
    monkeypatch.setattr(mmhh_engine, "save_checkpoint", real)


def test_kill_and_resume_gives_the_same_snapshot(tmp_path, monkeypatch):
    def args(annotation, *extra):
        argv = ["--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "cpu", "--batch_size", "400", "--num_iters",
                "5", "--hash_bit", "8", "--annotation", annotation, "--log_dir", str(tmp_path), "--snap_path",
                str(tmp_path), "--test_output_dir", str(tmp_path / "out"), "--distance_type", "MMHH", "--batch_type",
                "BatchInitMem", "--batch_params", "2", *extra]
        monkeypatch.setattr(sys, "argv", ["train_mmhh.py", *argv])  # what the results record calls the command
        return mmhh.get_train_parser().parse_args(argv)

    mmhh.train_main(args("whole"))
    killed_at_first_checkpoint(monkeypatch, lambda: mmhh.train_main(args("cut")))
    assert torch.load(tmp_path / "cut_digits_digits" / "checkpoint.pt")["iteration"] == 4  # 1697 // 400 per epoch
    mmhh.train_main(args("cut", "--resume"))
    whole = torch.load(tmp_path / "whole_digits_digits_iter_00005.pt")
    cut = torch.load(tmp_path / "cut_digits_digits_iter_00005.pt")
    for key, value in whole["model"].items():
        assert torch.equal(value, cut["model"][key]), key
    assert torch.equal(whole["memory"], cut["memory"])
    # the record names the command that started the run (which starts it again), and the one that finished it;
    # fails if the resumed record kept only its own command, whose --resume needs the run's folder
    ra = read_results(tmp_path / "whole_digits_digits")
    rb = read_results(tmp_path / "cut_digits_digits")
    start = "python train_mmhh.py " + " ".join(sys.argv[1:-1])
    assert rb["command"] == start and rb["resumed_by"] == start + " --resume"
    assert ra["command"] == start.replace("cut", "whole") and "resumed_by" not in ra


# ------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("args, message", [
    (["--s_dataset", "mnist"], "unknown dataset 'mnist'; known: cifar10"),
    (["--hash_bit", "0"], "--hash_bit must be at least 1"),
    (["--gpu_id", "x"], "--gpu_id must be a CUDA device number or 'cpu'"),
    (["--margin_params", "1:2"], "--margin_params must be five numbers"),
    (["--similar_weight", "many"], "--similar_weight must be a positive number, 'config' or 'auto'"),
    (["--test_sample_ratio", "0"], "--test_sample_ratio must be in (0, 1]"),
    (["--s_dataset", "cifar10"], "cifar10 needs --data-root"),
    (["--s_dataset", "coco_80", "--data_root", "/nonexistent"], "coco80 needs --data-root"),
    (["--resume", "--annotation", "never"], "holds no run (no run.json)"),
    (["--lr", "1e30", "--loss_lambda", "1e30"], "the loss became"),
])
def test_bad_training_input_gives_one_line(tmp_path, monkeypatch, args, message):
    # in this process, through the script's own error handling (utils.errors.run); the first
    # case of test_bad_snapshots_give_one_line checks the same path in a process of its own
    base = ["--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "cpu", "--log_dir", tmp_path, "--snap_path",
            tmp_path, "--test_output_dir", tmp_path]
    code, _, err = entry("train_mmhh", *base, *args, monkeypatch=monkeypatch)
    one_error(code, err, message)


def test_bad_snapshots_give_one_line(tmp_path, monkeypatch):
    out = script("test_mmhh.py", "--model_path", tmp_path / "missing", "--gpu_id", "cpu")
    assert out.returncode == 2 and out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    assert "no snapshot at" in out.stderr
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, _, err = entry("test_mmhh", "--model_path", tmp_path / "junk", "--gpu_id", "cpu", monkeypatch=monkeypatch)
    one_error(code, err, "is unreadable")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    code, _, err = entry("test_mmhh", "--model_path", tmp_path / "other.pt", "--gpu_id", "cpu",
                         monkeypatch=monkeypatch)
    one_error(code, err, "is not a checkpoint of this project (no model state)")


def test_resolve_rejects_unknown_networks():
    a = mmhh.get_train_parser().parse_args(["--image_network", "LeNet"])
    with pytest.raises(UserError, match="choose from AlexNetFc"):
        mmhh_args.resolve(a)


# ------------------------------------------------------ the released code's defaults

# The released train_mmhh.py's defaults, read off its argparse (batch_type: it had none and
# chose PairBatch for the config weights); the paper preset must resolve to these.
RELEASED = dict(gpu_id="0", batch_size=48, hash_bit=48, lr=3e-4, annotation="empty", loss_lambda=0.1,
                num_iters=1000, pre_model_path="", image_network="AlexNetFc", image_loss_type="DHN",
                distance_type="Hamming", mission="Hashing", lr_schedule_type="Stair_Step", gamma=1.0,
                sigmoid_param=1.0, radius=0, decay_step=200, weight_decay=0.1, similar_weight_type="config",
                norm_memory_batch=False, batch_type="PairBatch", batch_params="300", semi_init_type="MODEL",
                semi_init_momentum=0.5, margin_params="0.5:0.8:1.0:1.0:2.0", fake_cpu_demo="False",
                test_sample_ratio=0.1, snapshot_interval=1000, opt_test=False)


def test_paper_preset_is_the_released_defaults():
    """Would catch a default drifting from the released code's, e.g. --distance_type MMHH (the
    paper's loss; the released parser defaulted to Hamming) or test_mmhh's --annotation."""
    a = mmhh_args.resolve(mmhh.get_train_parser().parse_args(["--s_dataset", "coco_80"]))
    assert {key: getattr(a, key) for key in RELEASED} == RELEASED
    assert (a.preset, a.t_dataset, a.optimizer, a.resize, a.crop, a.augment, a.pretrained) == \
        ("paper", "coco_80", "sgd", 256, 224, True, True)
    t = mmhh.get_test_parser().parse_args(["--model_path", "x"])
    assert (t.gpu_id, t.batch_size, t.radius, t.opt_test, t.annotation, t.test_sample_ratio) == \
        ("0", 16, 2, False, "empty", 1.0)


def test_cpu_pretrained_preset_resolves_to_what_the_readme_lists():
    """The cpu-pretrained preset as docs/MMHH.md lists it: ImageNet MobileNetV2 at 64 px, Adam 1e-4 halved
    once at 1000 of 2000 iterations, weight decay 5e-4; the released batch, crops and loss
    weight. Catches a preset key misspelt (it would fall back to AlexNet at 224 px) or the
    released weight decay 0.1 left in."""
    argv = ["--s_dataset", "flickr25k", "--preset", "cpu-pretrained"]
    a = mmhh_args.resolve(mmhh.get_train_parser().parse_args(argv))
    assert (a.image_network, a.pretrained, a.resize, a.crop, a.augment) == ("MobileNetV2Fc", True, 64, 64, True)
    assert (a.optimizer, a.lr, a.num_iters, a.decay_step, a.weight_decay, a.lr_schedule_type) == (
        "adam", 1e-4, 2000, 1000, 5e-4, "Stair_Step")
    assert (a.batch_size, a.loss_lambda) == (48, 0.1)


# ------------------------------------------------------------ list files, a stub net

def write_lists(root, classes, sizes, seed, colour=None):
    """HashNet list files train.txt / database.txt / test.txt (sizes lines) over 8x8 solid-colour
    PNGs: random colours (or `colour` for all) and one or two random labels per image."""
    rng = np.random.default_rng(seed)
    os.makedirs(root / "img")
    for part, n in zip(("train", "database", "test"), sizes):
        lines = []
        for i in range(n):
            rgb = colour or tuple(int(c) for c in rng.integers(0, 256, 3))
            Image.new("RGB", (8, 8), rgb).save(root / "img" / f"{part}{i}.png")
            labels = np.zeros(classes, dtype=int)
            labels[rng.integers(0, classes, rng.integers(1, 3))] = 1
            lines.append(f"img/{part}{i}.png " + " ".join(map(str, labels)))
        (root / f"{part}.txt").write_text("\n".join(lines) + "\n")
    return root


class MeanColour(torch.nn.Module):
    def forward(self, x):
        return x.mean((2, 3))  # B x 3


def colour_network(name, bits, pretrained, weights=None, seed=0):
    torch.manual_seed(seed)
    return HashModel(MeanColour(), 3, bits)


@pytest.fixture
def colour_model(monkeypatch):
    """The network replaced by the hash layer on the mean colour: solid-colour images of
    different colours get different codes at once (a 3-iteration SmallFc gives every image
    the same code), and runs take no convolutions."""
    monkeypatch.setattr(mmhh_common, "build_network", colour_network)


def train_args(tmp_path, *extra):
    return mmhh.get_train_parser().parse_args([
        "--preset", "smoke", "--gpu_id", "cpu", "--workers", "0", "--log_dir", str(tmp_path / "log"), "--snap_path",
        str(tmp_path / "snap"), "--test_output_dir", str(tmp_path / "out"), *map(str, extra)])


def mmhh_test_args(tmp_path, *extra):
    return mmhh.get_test_parser().parse_args(["--gpu_id", "cpu", "--workers", "0", "--log_dir", str(tmp_path / "tlog"),
                                              *map(str, extra)])


def read_json(path):
    with open(path) as f:
        return json.load(f)


def log_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------------- normalisation

def test_mmhh_normalises_nuswide21_with_imagenet_constants(tmp_path):
    """The released MMHH code normalised every data set with ImageNet's mean and std; the
    table's nuswide21 entry carries MAH's. Would catch MMHH's feeder taking the table's
    constants, or the default (MAH's) feeder being switched to ImageNet's."""
    root = write_lists(tmp_path, 21, (1, 1, 1), seed=0, colour=(200, 100, 50))
    data = mmhh_common.data_for("nuswide_21", {"data_root": str(root)}, None)[0]
    settings = argparse.Namespace(resize=4, crop=4, augment=False, workers=0)
    x = next(mmhh_common.feeders(data, "query", "cpu", settings).batches(np.arange(1), 1))[1]  # 1 x 3 x 4 x 4
    imagenet = [(200 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (50 / 255 - 0.406) / 0.225]
    mah = [(200 / 255 - 0.3893) / 0.2393, (100 / 255 - 0.4203) / 0.2354, (50 / 255 - 0.4361) / 0.2464]
    assert min(abs(a - b) for a, b in zip(imagenet, mah)) > 0.01  # the two normalisations are told apart
    torch.testing.assert_close(x[0], torch.tensor(imagenet).view(3, 1, 1).expand(3, 4, 4), atol=1e-5, rtol=0)
    table = next(Feeder(data, "query", "cpu", False, 4, 4, workers=0, square=True).batches(np.arange(1), 1))[1]
    torch.testing.assert_close(table[0], torch.tensor(mah).view(3, 1, 1).expand(3, 4, 4), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- the test set's root

def test_another_t_dataset_needs_t_data_root():
    """Would catch a --t_dataset other than --s_dataset read from --data_root (the training
    set's lists), silently."""
    with pytest.raises(UserError, match="give --t_data_root") as e:
        mmhh_args.resolve(mmhh.get_train_parser().parse_args(["--s_dataset", "nuswide_21", "--data_root", "n",
                                                         "--t_dataset", "coco_80"]))
    assert "\n" not in str(e.value)
    same = mmhh_args.resolve(mmhh.get_train_parser().parse_args(["--s_dataset", "coco_80", "--data_root", "r",
                                                            "--image_root", "i", "--t-dataset", "coco80"]))
    assert (same.t_data_root, same.t_image_root) == ("r", "i")  # the same data set, however spelt
    digits = mmhh_args.resolve(mmhh.get_train_parser().parse_args(["--s_dataset", "coco_80", "--data_root", "r",
                                                              "--t_dataset", "digits"]))
    assert digits.t_data_root is None  # nothing to read from a root
    other = mmhh_args.resolve(mmhh.get_train_parser().parse_args(["--s_dataset", "digits", "--t-dataset", "coco_80",
                                                             "--t-data-root", "c"]))
    assert (other.t_data_root, other.t_image_root) == ("c", None)  # image paths from c


def test_t_dataset_lists_come_from_t_data_root_in_training_and_in_test_mmhh(tmp_path, colour_model):
    """Would catch train_mmhh or test_mmhh reading coco_80's lists from --data_root (the
    nuswide_21 lists: 21 label columns, not coco_80's 80, and other counts)."""
    nus = write_lists(tmp_path / "nus", 21, (12, 20, 6), seed=1)
    coco = write_lists(tmp_path / "coco", 80, (10, 25, 9), seed=2)
    record = mmhh.train_main(train_args(tmp_path, "--s_dataset", "nuswide_21", "--data_root", nus, "--t_dataset",
                                        "coco_80", "--t_data_root", coco, "--test_sample_ratio", 1, "--radius", 1,
                                        "--hash_bit", 8))
    assert record["dataset"] == "coco80" and (record["metrics"]["queries"], record["metrics"]["database"]) == (9, 25)
    assert np.load(tmp_path / "out" / "empty_iter_00003" / "test_labels.npy").shape == (9, 80)
    snap = tmp_path / "snap" / "empty_nuswide_21_coco_80_iter_00003"
    tested = mmhh.test_main(mmhh_test_args(tmp_path, "--model_path", snap, "--radius", 1, "--annotation", "t"))
    assert tested["dataset"] == "coco80" and tested["metrics"] == record["metrics"]
    own = mmhh.test_main(mmhh_test_args(tmp_path, "--model_path", snap, "--radius", 1, "--annotation", "s",
                                   "--dataset", "nuswide_21"))
    assert own["dataset"] == "nuswide21" and (own["metrics"]["queries"], own["metrics"]["database"]) == (6, 20)


# ------------------------------------------------------------------------ old flags

def test_mission_other_than_hashing_is_a_one_line_error():
    """Would catch an unimplemented mission being accepted (the released code crashed on them)."""
    assert mmhh_args.resolve(mmhh.get_train_parser().parse_args(["--mission", "Hashing"])).mission == "Hashing"
    with pytest.raises(UserError, match="only Hashing was implemented") as e:
        mmhh_args.resolve(mmhh.get_train_parser().parse_args(["--mission", "Cross_Modal_Transfer"]))
    assert "\n" not in str(e.value)


def test_fake_cpu_demo_takes_true_or_false_only():
    """Would catch a typo such as 'yes' being taken as False, as the released code did."""
    with pytest.raises(UserError, match="--fake_cpu_demo must be True or False, got 'yes'"):
        mmhh_args.resolve(mmhh.get_train_parser().parse_args(["--fake_cpu_demo", "yes"]))
    a = mmhh_args.resolve(mmhh.get_train_parser().parse_args(["--fake-cpu-demo", "False", "--s_dataset", "coco_80"]))
    assert a.s_dataset == "coco_80"


def test_fake_cpu_demo_trains_and_tests_on_digits_and_snapshot_interval_is_stored(tmp_path, capsys, colour_model):
    """Would catch --fake_cpu_demo True being ignored (coco_80 and nuswide_21 need a --data_root
    that is not given here) or leaving the test set as it was, and --snapshot-interval not being
    accepted or recorded."""
    record = mmhh.train_main(train_args(tmp_path, "--fake_cpu_demo", "True", "--s_dataset", "coco_80", "--t_dataset",
                                        "nuswide_21", "--snapshot-interval", 7, "--test_sample_ratio", 0.05))
    lines = [line for line in capsys.readouterr().out.splitlines() if "--fake_cpu_demo" in line]
    assert len(lines) == 1 and "digits" in lines[0]
    assert record["dataset"] == "digits" and record["metrics"]["queries"] == 5
    run = read_json(tmp_path / "log" / "empty_digits_digits" / "run.json")
    assert (run["s_dataset"], run["t_dataset"], run["snapshot_interval"]) == ("digits", "digits", 7)
    assert mmhh.get_train_parser().parse_args(["--snapshot_interval", "5"]).snapshot_interval == 5
    labels = np.load(tmp_path / "out" / "empty_iter_00003" / "test_labels.npy")
    # digits' class ids as one-hot rows, the layout the released metrics read
    assert labels.dtype == np.float32 and labels.shape == (5, 10) and (labels.sum(1) == 1).all()


# ---------------------------------------------------------- the released overrides

@pytest.mark.parametrize("schedule", ["DANN_INV", "HashNet_Step", "Stair_Step"])
def test_hashnet_schedules_start_from_3e_4_whatever_lr_says(tmp_path, capsys, colour_model, schedule):
    """The released HashNet_Step and DANN_INV schedulers had lr 3e-4 built in. Would catch --lr
    reaching the optimiser under them (or not under Stair_Step), a missing or extra notice, or
    run.json recording an lr that was not used."""
    mmhh.train_main(train_args(tmp_path, "--s_dataset", "digits", "--lr_schedule_type", schedule, "--lr", 0.01,
                               "--log_every", 1, "--test_sample_ratio", 0.05))
    notices = [line for line in capsys.readouterr().err.splitlines() if line.startswith("notice:")]
    # by hand: DANN_INV 3e-4 (1 + 3e-4 t)^-0.75; HashNet_Step 3e-4 halved every 2000 iterations
    # (t < 3 here); Stair_Step --lr halved every --decay_step (200)
    want = {"DANN_INV": [3e-4 * (1 + 3e-4 * t) ** -0.75 for t in range(3)], "HashNet_Step": [3e-4] * 3,
            "Stair_Step": [0.01] * 3}[schedule]
    assert len(notices) == (schedule != "Stair_Step") and all("--lr 0.01" in line for line in notices)
    run = tmp_path / "log" / "empty_digits_digits"
    assert [r["lr"] for r in log_lines(run / "log.jsonl")] == pytest.approx(want, rel=1e-12)
    assert read_json(run / "run.json")["lr"] == want[0]
    snap = torch.load(tmp_path / "snap" / "empty_digits_digits_iter_00003.pt")
    groups = {g["name"]: g["lr"] for g in snap["optimizer"]["param_groups"]}
    assert groups == pytest.approx({"backbone": want[2], "hash_layer": 10 * want[2]}, rel=1e-12)


@pytest.mark.parametrize("loss_type, weight", [("HashNet", 0.0), ("DHN", 0.5)])
def test_hashnet_image_loss_sets_the_quantization_weight_to_0(tmp_path, capsys, colour_model, loss_type, weight):
    """The released code set loss_lambda to 0 under --image_loss_type HashNet. Would catch
    --loss_lambda reaching the loss there (or not under DHN), a missing or extra notice, or
    run.json recording a weight that was not used."""
    mmhh.train_main(train_args(tmp_path, "--s_dataset", "digits", "--image_loss_type", loss_type, "--loss_lambda",
                               0.5, "--log_every", 1, "--test_sample_ratio", 0.05))
    notices = [line for line in capsys.readouterr().err.splitlines() if line.startswith("notice:")]
    assert len(notices) == (loss_type == "HashNet") and all("--loss_lambda 0.5" in line for line in notices)
    run = tmp_path / "log" / "empty_digits_digits"
    for r in log_lines(run / "log.jsonl"):
        assert r["quantization_loss"] > 0.1  # outputs near 0: log cosh(|h| - 1) near log cosh 1
        assert r["loss"] == pytest.approx(r["pair_loss"] + weight * r["quantization_loss"], rel=1e-6)
    assert read_json(run / "run.json")["loss_lambda"] == weight


# --------------------------------------------- opt-test conventions and test outputs

def naive_ball(q_out, d_out, ql, dl, radius, opt):
    """MAP, precision and recall within the radius, one query at a time (METRICS.md 4): codes
    sign(output) with 0 -> +1; the ball ranked by the continuous q.v, ties by index. opt: the
    released optimised conventions (an empty ball left out of all three, a ball without
    relevant items AP 0), else the default ones (an empty ball 0 in all three, a ball without
    relevant items left out of MAP)."""
    qc, dc = np.where(q_out >= 0, 1, -1), np.where(d_out >= 0, 1, -1)
    aps, precision, recall = [], [], []
    for i in range(len(qc)):
        ball = sorted((j for j in range(len(dc)) if (qc[i] != dc[j]).sum() <= radius),
                      key=lambda j: (-float(np.dot(q_out[i], d_out[j])), j))
        rel = [(ql[i] * dl[j]).sum() > 0 for j in ball]
        total = sum((ql[i] * dl[j]).sum() > 0 for j in range(len(dc)))
        if not ball:
            if not opt:
                aps.append(0.0), precision.append(0.0), recall.append(0.0)
            continue
        precision.append(sum(rel) / len(rel))
        recall.append(sum(rel) / total if total else 0.0)
        if any(rel):
            found, ap = 0, 0.0
            for rank, r in enumerate(rel, 1):
                found += r
                ap += found / rank if r else 0.0
            aps.append(ap / found)
        elif opt:
            aps.append(0.0)
    mean = lambda v: float(np.mean(v)) if v else 0.0  # noqa: E731
    return {"map_within_radius": mean(aps), "precision_within_radius": mean(precision),
            "recall_within_radius": mean(recall)}


def test_opt_test_conventions_reach_the_results_and_test_outputs_hold_what_was_tested(tmp_path, colour_model):
    """Would catch: --opt-test not averaging precision and recall over non-empty balls only (or
    the default not over all queries); the end-of-training .npy files missing, of other shapes or
    dtypes, or not the outputs whose signs the metrics used; the results file's precision-recall
    curve of other codes or conventions."""
    lists = write_lists(tmp_path / "nus", 21, (12, 40, 16), seed=3)
    radius, bits = 1, 16
    trained = mmhh.train_main(train_args(tmp_path, "--s_dataset", "nuswide_21", "--data_root", lists, "--annotation",
                                         "opt", "--test_sample_ratio", 1, "--radius", radius, "--hash_bit", bits,
                                         "--opt-test", "True"))
    out = tmp_path / "out" / "opt_iter_00003"
    files = {name: np.load(out / f"{name}.npy") for name in ("test_code", "test_labels", "database_code",
                                                               "database_labels")}
    assert {name: (a.dtype, a.shape) for name, a in files.items()} == {
        "test_code": (np.float32, (16, bits)), "test_labels": (np.float32, (16, 21)),
        "database_code": (np.float32, (40, bits)), "database_labels": (np.float32, (40, 21))}
    for part, lines in (("test", 16), ("database", 40)):  # the lists' label rows, in some order
        rows = [[int(t) for t in line.split()[1:]] for line in (lists / f"{part}.txt").read_text().splitlines()]
        assert sorted(map(tuple, files[f"{part}_labels"].astype(int).tolist())) == sorted(map(tuple, rows))
    q_out, d_out, ql, dl = files["test_code"], files["database_code"], files["test_labels"], files["database_labels"]
    dist = (np.where(q_out >= 0, 1, -1)[:, None, :] != np.where(d_out >= 0, 1, -1)[None]).sum(2)
    ball = (dist <= radius).sum(1)
    assert (ball == 0).any() and (ball > 0).any()  # the case tells the two conventions apart
    opt, plain = naive_ball(q_out, d_out, ql, dl, radius, True), naive_ball(q_out, d_out, ql, dl, radius, False)
    assert opt["precision_within_radius"] != pytest.approx(plain["precision_within_radius"])
    assert {key: trained["metrics"][key] for key in opt} == pytest.approx(opt, abs=1e-12)
    assert trained["metrics"]["pr_average"] == "nonempty"
    # the precision-recall curve of the results file: the naive ball at every radius, averaged over
    # all queries (an empty ball counts 0) whatever --opt-test says
    pr = trained["metrics"]["pr_by_radius"]
    naive = [naive_ball(q_out, d_out, ql, dl, r, False) for r in range(bits + 1)]
    assert pr["precision"] == pytest.approx([n["precision_within_radius"] for n in naive], abs=1e-12)
    assert pr["recall"] == pytest.approx([n["recall_within_radius"] for n in naive], abs=1e-12)
    snap = tmp_path / "snap" / "opt_nuswide_21_nuswide_21_iter_00003"
    tested = mmhh.test_main(mmhh_test_args(tmp_path, "--model_path", snap, "--radius", radius, "--output_path",
                                      tmp_path / "codes"))
    assert {key: tested["metrics"][key] for key in plain} == pytest.approx(plain, abs=1e-12)
    # the codes test_mmhh's metrics used (same snapshot, subset and order) are the signs of the saved outputs
    np.testing.assert_array_equal(np.load(tmp_path / "codes" / "query_codes.npy"), np.where(q_out >= 0, 1, -1))
    np.testing.assert_array_equal(np.load(tmp_path / "codes" / "database_codes.npy"), np.where(d_out >= 0, 1, -1))


def test_saved_outputs_score_what_encoding_again_gives_and_refuse_another_sample(tmp_path, colour_model):
    """Would catch --saved_outputs scoring the saved outputs against another sample or order of
    the labels (the half sample below), dropping the --opt-test conventions or ranking by signs
    instead of the outputs (each changes a number encoding again gives), or reading outputs of
    another sample, snapshot or run without a word."""
    lists = write_lists(tmp_path / "nus", 21, (12, 40, 16), seed=3)
    mmhh.train_main(train_args(tmp_path, "--s_dataset", "nuswide_21", "--data_root", lists, "--annotation", "so",
                               "--test_sample_ratio", 0.5, "--radius", 2, "--hash_bit", 16))
    snap = tmp_path / "snap" / "so_nuswide_21_nuswide_21_iter_00003.pt"
    tested = {}
    for name, extra in (("encoded", []), ("saved", ["--saved_outputs"])):
        tested[name] = mmhh.test_main(mmhh_test_args(tmp_path, "--model_path", snap, "--radius", 2, "--opt-test",
                                                     "--test_sample_ratio", 0.5, "--annotation", name, *extra))
    assert tested["saved"]["metrics"] == tested["encoded"]["metrics"]
    found = tested["saved"]["metrics"]
    assert found["opt_test"] and found["queries"] == 8 and 0 < found["map_within_radius"] < 1
    assert 0 < found["balls"]["empty_ball_share"] < 1  # the two conventions differ here (an empty ball)
    assert (tested["saved"]["saved_outputs"], tested["encoded"]["saved_outputs"]) == (True, False)

    def refused(*extra, model=snap):
        with pytest.raises(UserError) as e:
            mmhh.test_main(mmhh_test_args(tmp_path, "--model_path", model, "--saved_outputs", "--annotation", "bad",
                                          *extra))
        return str(e.value)

    assert "--test_sample_ratio 0.5, not 1.0" in refused()  # the whole set was never saved
    assert "--seed 0, not 1" in refused("--test_sample_ratio", 0.5, "--seed", 1)
    earlier = tmp_path / "snap" / "so_nuswide_21_nuswide_21_iter_00002.pt"
    earlier.write_bytes(snap.read_bytes())
    assert "last snapshot so_nuswide_21_nuswide_21_iter_00003.pt" in refused("--test_sample_ratio", 0.5,
                                                                            model=earlier)
    out = tmp_path / "out" / "so_iter_00003"
    labels = np.load(out / "test_labels.npy")
    np.save(out / "test_labels.npy", labels[::-1].copy())  # another order of the same items
    assert "not those of this snapshot's test" in refused("--test_sample_ratio", 0.5)
    (out / "database_code.npy").write_bytes(b"junk")
    assert "cannot be read" in refused("--test_sample_ratio", 0.5)


@pytest.mark.parametrize("rank_by", ["signs", "scores"])
def test_the_tie_aware_map_stands_beside_the_whole_ranking_by_hamming_distance(rank_by):
    """One query of class 0 against three database items of one code (all at distance 0), the
    relevant one last: in index order AP = 1/3; over the 3! orders of the tie its rank is 1, 2
    or 3 with probability 1/3 each, E[1/rank] = (1 + 1/2 + 1/3) / 3 = 11/18. Ranked by scores
    (q.v, no ties to speak of) no tie-aware MAP is given. Catches the tie-aware MAP dropped,
    computed in index order, or given where the ranking is not by Hamming distance."""
    from types import SimpleNamespace

    from utils.mmhh.evaluate import score

    q = torch.tensor([[0.9, -0.5, 0.2, 0.7]])  # 1 x K
    d = torch.tensor([[0.1, -0.2, 0.3, 0.4], [0.5, -0.9, 0.6, 0.2], [0.3, -0.1, 0.8, 0.9]])  # 3 x K, one code
    ql, dl = np.array([[1, 0]]), np.array([[0, 1], [0, 1], [1, 0]])
    info = SimpleNamespace(topk=-1, classes=2)
    result, _ = score(q, d, ql, dl, info, argparse.Namespace(rank_by=rank_by, opt_test=False), 2)
    if rank_by == "signs":
        assert result["map_topk"] == pytest.approx(1 / 3)
        assert result["map_topk_tie_aware"] == pytest.approx(11 / 18)
    else:
        assert "map_topk_tie_aware" not in result
