"""MMHH: losses by hand, memory and schedules, the two scripts end to end, resume, bad inputs."""
import json
import math
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

from utils import memory as mem
from utils import mmhh, optim
from utils.errors import UserError
from utils.adsh import similarity
from utils.losses import hashnet_loss, mmhh_loss, parse_margin_params, quantization_loss, similar_weight
from utils.models import HashModel, SmallConvNet

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
    assert w_s == pytest.approx(4 / 5)  # 4 dissimilar / 5 similar pairs
    gamma = 2.0
    want = 0.0
    for i in range(3):
        for j in range(3):
            inside = d[i][j] <= 2  # margin 2.0
            if S[i, j]:  # sim_in 0.5 inside, sim_out 1.0 outside: -log p, p = gamma / 2 / (d + gamma)
                want += w_s * (0.5 if inside else 1.0) * (math.log(2) + math.log(1 + d[i][j] / gamma))
            else:  # dis_in 0.8, dis_out 1.0: -log(1 - p)
                want += (0.8 if inside else 1.0) * math.log((d[i][j] + gamma) / (d[i][j] + gamma / 2))
    want /= 9
    # one term spelled out: pair (0, 0) is similar at d = 0 inside the margin -> 0.8 * 0.5 * log 2
    assert w_s * 0.5 * math.log(2) == pytest.approx(0.4 * math.log(2))
    h = H1.clone().requires_grad_()
    got = mmhh_loss(h, H2, S, gamma, MARGINS, w_s)
    assert got.item() == pytest.approx(want, rel=1e-6)
    got.backward()
    assert torch.isfinite(h.grad).all()  # the zero row gives no NaN


def test_similar_weight_number_config_and_auto_without_similar_pairs():
    S = torch.zeros(2, 3)
    assert similar_weight("5", S, 1.0) == 5.0
    assert similar_weight("config", S, 5.0) == 5.0
    assert similar_weight("auto", S, 5.0) == 1.0  # no similar pair: the weight does not matter


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
    assert mmhh.continuation_scale(0) == 1.0 and mmhh.continuation_scale(198) == 1.0
    assert mmhh.continuation_scale(199) == pytest.approx(math.sqrt(2))  # forward 200: 1 + 0.005 * 200
    assert mmhh.continuation_scale(399) == pytest.approx(math.sqrt(3))


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


def test_snapshot_round_trip_gives_the_same_map(tmp_path):
    common = ["--gpu_id", "cpu", "--log_dir", tmp_path / "log", "--radius", "2"]
    out = script("train_mmhh.py", "--s_dataset", "digits", "--preset", "smoke", "--hash_bit", "12", "--annotation",
                 "rt", "--snap_path", tmp_path / "snap", "--test_sample_ratio", "0.5", "--seed", "3", *common)
    assert out.returncode == 0, out.stderr
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
    out = script("test_mmhh.py", "--model_path", f"{snap}.pt", "--radius", "0", "--opt-test", *common[:4])
    assert out.returncode == 0 and "MAP@TopK (full ranking)" in out.stdout


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
                 tmp_path, "--snap_path", tmp_path, "--test_sample_ratio", "1", *extra)
    assert out.returncode == 0, out.stderr
    record = read_results(tmp_path)
    assert record["dataset"] == "coco80" and record["metrics"]["topk"] == 5000
    assert record["metrics"]["queries"] == 30 and record["metrics"]["database"] == 129
    assert all(math.isfinite(v) for v in record["metrics"].values() if isinstance(v, float))
    log = [json.loads(line) for line in open(tmp_path / "empty_coco_80_coco_80" / "log.jsonl")]
    assert log[-1]["iteration"] == 3 and math.isfinite(log[-1]["loss"])


def test_kill_and_resume_gives_the_same_snapshot(tmp_path, monkeypatch):
    def args(annotation, *extra):
        return mmhh.get_train_parser().parse_args([
            "--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "cpu", "--batch_size", "400", "--num_iters", "8",
            "--hash_bit", "8", "--annotation", annotation, "--log_dir", str(tmp_path), "--snap_path", str(tmp_path),
            "--batch_type", "BatchInitMem", "--batch_params", "2", *extra])

    mmhh.train_main(args("whole"))
    real = mmhh.save_checkpoint

    def killed_after_first_epoch(path, state):
        real(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(mmhh, "save_checkpoint", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        mmhh.train_main(args("cut"))
    monkeypatch.setattr(mmhh, "save_checkpoint", real)
    assert torch.load(tmp_path / "cut_digits_digits" / "checkpoint.pt")["iteration"] == 4  # 1697 // 400 per epoch
    mmhh.train_main(args("cut", "--resume"))
    whole = torch.load(tmp_path / "whole_digits_digits_iter_00008.pt")
    cut = torch.load(tmp_path / "cut_digits_digits_iter_00008.pt")
    for key, value in whole["model"].items():
        assert torch.equal(value, cut["model"][key]), key
    assert torch.equal(whole["memory"], cut["memory"])


# ------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("args, message", [
    (["--s_dataset", "mnist"], "unknown dataset 'mnist'; known: cifar10"),
    (["--hash_bit", "0"], "--hash_bit must be at least 1"),
    (["--gpu_id", "x"], "--gpu must be a CUDA device number or 'cpu'"),
    (["--margin_params", "1:2"], "--margin_params must be five numbers"),
    (["--similar_weight", "many"], "--similar_weight must be a positive number, 'config' or 'auto'"),
    (["--test_sample_ratio", "0"], "--test_sample_ratio must be in (0, 1]"),
    (["--s_dataset", "cifar10"], "cifar10 needs --data-root"),
    (["--s_dataset", "coco_80", "--data_root", "/nonexistent"], "coco80 needs --data-root"),
    (["--resume", "--annotation", "never"], "has no checkpoint.pt"),
    (["--lr", "1e30", "--loss_lambda", "1e30"], "the loss became"),
])
def test_bad_training_input_gives_one_line(tmp_path, args, message):
    base = ["--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "cpu", "--log_dir", tmp_path, "--snap_path",
            tmp_path]
    out = script("train_mmhh.py", *base, *args)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: ") and message in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_bad_snapshots_give_one_line(tmp_path):
    out = script("test_mmhh.py", "--model_path", tmp_path / "missing", "--gpu_id", "cpu")
    assert out.returncode == 2 and "no snapshot at" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    out = script("test_mmhh.py", "--model_path", tmp_path / "junk", "--gpu_id", "cpu")
    assert out.returncode == 2 and "is unreadable" in out.stderr and "Traceback" not in out.stderr
    torch.save({"weights": 1}, tmp_path / "other.pt")
    out = script("test_mmhh.py", "--model_path", tmp_path / "other.pt", "--gpu_id", "cpu")
    assert out.returncode == 2 and "not a snapshot of train_mmhh.py" in out.stderr


def test_resolve_rejects_unknown_networks():
    a = mmhh.get_train_parser().parse_args(["--image_network", "LeNet"])
    with pytest.raises(UserError, match="choose from AlexNetFc"):
        mmhh.resolve(a)
