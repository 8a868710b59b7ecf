"""MAH's training loop observed from outside: what it feeds the loss, DCC and the optimiser,
checked against the spec's formulas (MAH.md) evaluated directly in the test.

Each test runs the real loop (mah.main on the embedded digits, preset smoke: 48 sampled
items, batches of 16, SGD) with spies around ADSHLoss, dcc_update, the optimiser and the
checkpoint writer; expected values are recomputed here from the labels, never read from
the code under test.
"""
import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from utils import mah
from utils.mah import adsh, engine
from utils.mah import train as mah_train
from utils.data.feeder import Feeder
from utils.data.loader import load_data
from utils.data.images import ArrayImages

PAPER = dict(bits="4", aux_for={}, head_weights="4,2,1", gamma=200, max_iter=41, epochs=3, batch_size=64,
             num_samples=2000, eval_every=1)
GAMMA = 200  # the paper defaults above, which the smoke preset keeps


def smoke(out, *argv, arch="cascade", dataset="digits"):
    parser = mah.get_args_parser()
    parser.set_defaults(script="test", arch=arch, dataset=dataset, paper=PAPER)
    return parser.parse_args(["--preset", "smoke", "--gpu", "cpu", "--workers", "0", "--output-dir", str(out),
                              *map(str, argv)])


class Spy:
    """Records, in order, every loss call (head length, outputs, V, batch indices, value),
    every DCC call (its V before the update, U, sample) and every optimiser step (lr and the
    gradients of the heads)."""

    def __init__(self, monkeypatch):
        self.losses, self.dccs, self.steps, self.checkpoints, self.inputs = [], [], [], [], []
        forward, dcc, build, save = adsh.ADSHLoss.forward, engine.dcc_update, engine.build_model, engine.save_checkpoint

        def spy_forward(loss, u, V, idx, gram, SV, S2):
            value = forward(loss, u, V, idx, gram, SV, S2)
            self.losses.append(dict(c=V.shape[1], u=u.detach().clone(), V=V.clone(), idx=idx.clone(),
                                    value=value.item(), iteration=len(self.dccs) // 3))
            return value

        def spy_dcc(V, U, sample_index, *args, **kw):
            self.dccs.append(dict(V=V.clone(), U=U.clone(), sample=sample_index.clone()))
            return dcc(V, U, sample_index, *args, **kw)

        def spy_build(*args):
            model, opt = build(*args)
            step = opt.step
            model.register_forward_pre_hook(lambda module, x: self.inputs.append(x[0].clone()) if module.training
                                            else None)

            def spy_step(*a, **kw):
                heads = model.heads.heads if hasattr(model.heads, "heads") else None
                grads = [h.weight.grad.clone() for h in heads] if heads is not None else None
                self.steps.append(dict(lr=[g["lr"] for g in opt.param_groups], head_grads=grads))
                return step(*a, **kw)

            opt.step = spy_step
            self.optimizer = opt
            return model, opt

        def spy_save(path, state):
            self.checkpoints.append(dict(iteration=state["iteration"], V=[v.clone() for v in state["V"]]))
            return save(path, state)

        monkeypatch.setattr(adsh.ADSHLoss, "forward", spy_forward)
        monkeypatch.setattr(engine, "dcc_update", spy_dcc)
        monkeypatch.setattr(engine, "build_model", spy_build)
        monkeypatch.setattr(engine, "save_checkpoint", spy_save)


def database_labels(out):
    """The digits database of the run in `out` as one-hot float rows (n x 10)."""
    data = load_data("digits", split_file=os.path.join(out, "split.json"))
    return torch.eye(10)[torch.as_tensor(data.database.labels)], data


def log_lines(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------------------------ the loss

def test_the_loss_of_each_batch_is_the_spec_formula_on_the_dense_similarity(tmp_path, monkeypatch):
    """MAH.md: per head, [sum_ij (u_i.v_j - c S_ij)^2 + gamma sum_i ||v_idx(i) - u_i||^2] / (n B)
    with S the soft similarity (1 if a label is shared, else -r, r = similar / dissimilar pairs of
    the sampled items against the database). Evaluated here on the dense S built from the labels,
    for every batch and head of the second outer iteration (V is all zeros in the first).
    Catches the dissimilar term's sign flipped where the loop builds S V, r computed over all pairs,
    sum S^2 without r^2, the cross term's sign, and gamma dropped."""
    spy = Spy(monkeypatch)
    mah.main(smoke(tmp_path, "--max-iter", 2, "--eval-every", 2))
    L, _ = database_labels(str(tmp_path))
    L = L.double()
    n = len(L)
    checked = 0
    for call in spy.losses:
        if call["iteration"] != 1:
            continue
        sample = spy.dccs[3]["sample"]  # the sample of outer iteration 1
        similar = (L[sample] @ L.T > 0).double()  # m x n
        r = similar.sum() / (1 - similar).sum()
        S = (L[call["idx"]] @ L.T > 0).double() * (1 + r) - r  # B x n soft similarity
        u, V, c = call["u"].double(), call["V"].double(), call["c"]
        assert V.abs().sum() > 0  # DCC has run: the S V term matters
        want = (((u @ V.T - c * S) ** 2).sum() + GAMMA * ((V[call["idx"]] - u) ** 2).sum()) / (n * len(u))
        assert call["value"] == pytest.approx(float(want), rel=1e-5), call["c"]
        checked += 1
    assert checked == 3 * 3  # three batches of 16 from 48 items, three heads
    assert sorted({call["c"] for call in spy.losses}) == [4, 8, 16]


@pytest.mark.parametrize("weights, live", [("1,0,0", 0), ("0,0,1", 2)])
def test_head_weights_scale_each_heads_gradient(tmp_path, monkeypatch, weights, live):
    """Flat heads are independent, so with weight 0 on a head its layer gets no gradient at all
    and with a positive weight it does. Catches the weights ignored (sum of the head losses) or
    applied to the wrong heads."""
    spy = Spy(monkeypatch)
    mah.main(smoke(tmp_path, "--max-iter", 2, "--eval-every", 2, "--head-weights", weights, arch="flat"))
    assert spy.steps
    for step in spy.steps:
        for k, grad in enumerate(step["head_grads"]):
            assert (grad.abs().sum() > 0) == (k == live), (k, weights)


# ---------------------------------------------------------------------------- DCC inputs

def test_dcc_gets_the_last_epochs_outputs_of_a_fresh_sample(tmp_path, monkeypatch):
    """MAH.md: U holds the outputs of the LAST inner epoch, taken before each optimiser step, and
    the database sample is drawn anew each outer iteration; every batch comes from that sample.
    Catches U left at zeros, U from the first epoch, and one sample for the whole run."""
    spy = Spy(monkeypatch)
    mah.main(smoke(tmp_path, "--max-iter", 2, "--eval-every", 2, "--epochs", 2))
    samples = []
    for it in range(2):
        calls = [c for c in spy.losses if c["iteration"] == it]
        per_epoch = len(calls) // 2
        for k, c in enumerate((4, 8, 16)):
            dcc = spy.dccs[3 * it + k]
            sample = dcc["sample"]
            first = {int(i): u for call in calls[:per_epoch] if call["c"] == c for i, u in zip(call["idx"], call["u"])}
            last = {int(i): u for call in calls[per_epoch:] if call["c"] == c for i, u in zip(call["idx"], call["u"])}
            assert set(first) == set(last) == set(sample.tolist()) and len(set(sample.tolist())) == len(sample) == 48
            want = torch.stack([last[int(i)] for i in sample])  # m x c, in sample order
            assert torch.equal(dcc["U"], want)
            assert not torch.equal(want, torch.stack([first[int(i)] for i in sample]))  # the epochs differ
        samples.append(set(spy.dccs[3 * it]["sample"].tolist()))
    assert samples[0] != samples[1]


def test_database_codes_are_held_then_learned(tmp_path, monkeypatch):
    """--v-init labels --v-hold 2: V after outer iterations 0 and 1 is the initial class code
    of each item (one code per class, distinct classes distinct codes: 16 codes for 10 classes
    at 4 bits), and DCC changes it from iteration 2 on. Catches a hold one iteration too long or
    short, and codes not assigned by class."""
    spy = Spy(monkeypatch)
    mah.main(smoke(tmp_path, "--max-iter", 4, "--eval-every", 4, "--v-init", "labels", "--v-hold", 2))
    L, data = database_labels(str(tmp_path))
    labels = torch.as_tensor(data.database.labels)
    V = [ckpt["V"] for ckpt in spy.checkpoints]  # after iterations 0..3
    for k in range(3):
        assert torch.equal(V[0][k], V[1][k])
        codes = [V[0][k][labels == cls].unique(dim=0) for cls in range(10)]
        assert all(len(code) == 1 for code in codes)  # one code per class
        assert len(torch.cat(codes).unique(dim=0)) == 10  # distinct between classes
    assert not all(torch.equal(V[1][k], V[2][k]) for k in range(3))  # DCC ran in iteration 2
    assert len(spy.dccs) == 3 * 2


# ------------------------------------------------------------------------- the optimiser

def test_lr_steps_divide_the_lr_after_the_named_outer_iterations(tmp_path, monkeypatch):
    """MAH.md: after the epochs of outer iteration it, lr /= 10 when it is in the steps. With
    --lr-steps 0,2: iteration 0 at 1e-3, 1 and 2 at 1e-4, 3 at 1e-5, for every optimiser step
    (three per iteration) and in the log. Catches the steps never applied and an off-by-one."""
    spy = Spy(monkeypatch)
    mah.main(smoke(tmp_path, "--max-iter", 4, "--eval-every", 4, "--lr-steps", "0,2", "--optimizer", "adam"))
    used = [step["lr"][0] for step in spy.steps]
    assert used == pytest.approx([1e-3] * 3 + [1e-4] * 6 + [1e-5] * 3)
    assert [line["lr"] for line in log_lines(str(tmp_path))] == pytest.approx([1e-3, 1e-4, 1e-4, 1e-5])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizer_is_the_originals(tmp_path, monkeypatch, optimizer):
    """MAH.md: SGD(lr=1e-3, weight_decay=5e-4, momentum=0), one lr for all parameters; Adam (the
    CPU presets) keeps the weight decay. Catches the weight decay dropped, a momentum default
    other than the original's 0, or a second parameter group."""
    spy = Spy(monkeypatch)
    mah.main(smoke(tmp_path, "--max-iter", 1, "--eval-every", 1, "--optimizer", optimizer))
    groups = spy.optimizer.param_groups
    assert len(groups) == 1 and groups[0]["weight_decay"] == 5e-4 and groups[0]["lr"] == 1e-3
    if optimizer == "sgd":
        assert groups[0]["momentum"] == 0 and not groups[0]["nesterov"]


# ---------------------------------------------------------------------------- evaluation

def test_the_last_outer_iteration_is_reported_never_the_best(tmp_path, monkeypatch):
    """Three iterations evaluated every 2: the log has metrics at iterations 1 and 2 (the last),
    and the results file holds iteration 2's, even where iteration 1 scored higher. Catches the
    last iteration left unevaluated (an earlier one reported) and a best-so-far report."""
    evaluate, scores = engine.evaluate, iter([0.9, 0.1])

    def fake_evaluate(*args):  # iteration 1 "scores" better than iteration 2
        result = evaluate(*args)
        result["map"] = next(scores)
        return result

    monkeypatch.setattr(engine, "evaluate", fake_evaluate)
    mah.main(smoke(tmp_path, "--max-iter", 3, "--eval-every", 2))
    lines = log_lines(str(tmp_path))
    assert [line["iteration"] for line in lines if "metrics" in line] == [1, 2]
    with open(tmp_path / "results" / "digits_MAH-cascade_4bits.json") as f:
        assert json.load(f)["metrics"] == lines[2]["metrics"] and lines[2]["metrics"]["map"] == 0.1


def test_an_output_of_exactly_zero_is_coded_plus_one():
    """MAH.md: query codes are sign(net(x)) with sign(0) = +1, as the database's. Queries whose
    head-0 output is exactly 0 then match the all-(+1) database items of their class. Catches
    zeros coded -1 (they would match the other class's all-(-1) codes)."""
    from types import SimpleNamespace

    class Zeros(torch.nn.Module):
        def forward(self, x):
            return [torch.zeros(len(x), 2), torch.zeros(len(x), 4), torch.zeros(len(x), 8)]

    class Items:
        def __len__(self):
            return 2

        def batches(self, order, batch_size):
            yield torch.arange(len(order)), torch.as_tensor(order)

    V = [torch.tensor([[1.0] * c, [1.0] * c, [-1.0] * c, [-1.0] * c]) for c in (2, 4, 8)]
    data = SimpleNamespace(query=SimpleNamespace(labels=np.array([0, 0])),
                           database=SimpleNamespace(labels=np.array([0, 0, 1, 1])))
    result = engine.evaluate(Zeros(), Items(), V, data, batch_size=2)
    assert result["map"] == 1.0 and result["map_tie_aware"] == 1.0
    assert [a["map"] for a in result["aux"]] == [1.0, 1.0]


# -------------------------------------------------------------------------- augmentation

def _shifts_and_flips(x, y, pad=4):
    """For each image of x (B x 3 x H x W), the (dy, dx, flip) whose crop of the zero-padded
    image equals y's image, searched by brute force (None when no crop matches)."""
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    h, w = x.shape[2:]
    found = []
    for i in range(len(x)):
        match = None
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                crop = padded[i, :, dy:dy + h, dx:dx + w]
                for flip in (False, True):
                    if torch.equal(crop.flip(2) if flip else crop, y[i]):
                        match = match or (dy, dx, flip)
        found.append(match)
    return found


def test_array_augmentation_is_a_4_pixel_shift_and_a_flip():
    """Every augmented training image is a crop of the 4-pixel zero-padded image, flipped or not;
    over 64 random images both flipped and unflipped ones occur and some are shifted; queries
    (train=False) are never changed. Catches the augmented batch discarded, flips never drawn,
    and augmentation applied at test time."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 8, 8, 3), generator=g, dtype=torch.uint8).numpy()
    arrays = ArrayImages(images, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), augment=True)
    plain = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    found = _shifts_and_flips(plain, arrays.batch(torch.arange(64), train=True, generator=g))
    assert all(f is not None for f in found)
    flips = sum(f[2] for f in found)
    assert 10 < flips < 54 and sum((f[0], f[1]) != (4, 4) for f in found) > 32
    assert torch.equal(arrays.batch(torch.arange(64), train=False), plain)


@pytest.mark.parametrize("augment", [True, False])
def test_training_batches_are_augmented_exactly_when_asked(tmp_path, monkeypatch, augment):
    """The images the network trains on against the stored images of the same items: shifted
    or flipped copies with --augment, the stored ones without. Catches --augment not reaching
    the training feeder."""
    spy = Spy(monkeypatch)
    mah.main(smoke(tmp_path, "--max-iter", 1, "--eval-every", 1, "--augment" if augment else "--no-augment"))
    _, data = database_labels(str(tmp_path))
    plain = Feeder(data, "database", "cpu", False, 32, 32)
    batch = [c["idx"] for c in spy.losses if c["c"] == 4][0]
    want = next(plain.batches(batch.numpy(), len(batch)))[1]
    got = spy.inputs[0]
    assert torch.equal(got.contiguous(), want) != augment


def noise_lists(root, n=24, size=48, classes=21):
    """A MAH list-file data set for nuswide21 of random-noise images (augmentation shows on them,
    not on solid colours), one label each, the same images as database and test."""
    rng = np.random.default_rng(0)
    os.makedirs(root / "img", exist_ok=True)
    labels = np.eye(classes, dtype=int)[np.arange(n) % classes]
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "img" / f"{i}.png")
    for part in ("database", "test"):
        (root / f"{part}_img.txt").write_text("".join(f"img/{i}.png\n" for i in range(n)))
        (root / f"{part}_label.txt").write_text("".join(" ".join(map(str, row)) + "\n" for row in labels))
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_list_file_crops_come_from_the_seeded_generator(tmp_path, workers):
    """Training batches of list-file images: the same generator seed gives the same crops (also
    with worker processes), another seed other crops, and without augmentation or at test time
    every pass is the centre crop. Catches crops drawn from an unseeded source (a resumed run
    would see other images) and augmentation switched off for list files."""
    data = load_data("nuswide21", str(noise_lists(tmp_path)))
    order = np.arange(12)

    def batch(train, augment, seed):
        feeder = Feeder(data, "database", "cpu", train, 40, 32, augment=augment, workers=workers,
                        crop_scale=(0.75, 1.0))
        return next(feeder.batches(order, 12, torch.Generator().manual_seed(seed)))[1]

    assert torch.equal(batch(True, True, 1), batch(True, True, 1))
    assert not torch.equal(batch(True, True, 1), batch(True, True, 2))
    centre = batch(False, True, 1)
    assert torch.equal(batch(True, False, 1), centre) and torch.equal(batch(False, True, 2), centre)
    assert not torch.equal(batch(True, True, 1), centre)


def test_mah_list_file_training_crops_keep_three_quarters_of_the_area(tmp_path, monkeypatch):
    """README (cpu-pretrained deviations): list-file training crops keep at least 3/4 of the
    image, and are drawn only when augmenting. Recorded from the feeders MAH's loop builds.
    Catches torchvision's default 0.08 left in, or augmentation reaching the query feeder."""
    built = []

    class Recording(Feeder):
        def __init__(self, data, part, device, train, *args, **kw):
            built.append(dict(part=part, train=train, **kw))
            super().__init__(data, part, device, train, *args, **kw)

    monkeypatch.setattr(engine, "Feeder", Recording)
    root = noise_lists(tmp_path / "data")
    mah.main(smoke(tmp_path / "run", "--data-root", root, "--max-iter", 1, "--eval-every", 1, "--augment",
                   dataset="nuswide21"))
    database = [b for b in built if b["part"] == "database"]
    query = [b for b in built if b["part"] == "query"]
    assert database and all(b["train"] and b["augment"] and b["crop_scale"] == (0.75, 1.0) for b in database)
    assert query and not any(b["train"] for b in query)


# -------------------------------------------------------------------------------- resume

@pytest.mark.parametrize("dataset, extra", [
    ("digits", ["--optimizer", "adam", "--augment", "--lr-steps", "1", "--v-init", "labels", "--v-hold", "1",
                "--bits", "4,6"]),
    ("nuswide21", ["--optimizer", "adam", "--augment", "--lr-steps", "1", "--workers", "2", "--bits", "4,6"]),
    ("dropout", ["--bits", "4,6"]),
])
def test_a_run_killed_in_its_second_length_resumes_to_the_same_results(tmp_path, monkeypatch, dataset, extra):
    """Killed after the checkpoint of iteration 1 of the second code length, then resumed: every
    length's metrics and the last codes equal an uninterrupted run's, with Adam (whose moments
    must be restored), augmentation, an lr step and a hold before the kill, on the digits and on
    list files read by two worker processes (crops from the seeded generator). Catches the
    optimiser state not restored, an lr step replayed or lost, and unseeded crops; with a dropout
    layer (AlexNet and VGG have them), masks drawn from an unseeded generator after the resume."""
    if dataset == "dropout":
        from utils.models import SmallConvNet

        dataset = "digits"
        def with_dropout(*args):  # a fresh network for every run, as build_backbone gives
            return torch.nn.Sequential(SmallConvNet(), torch.nn.Dropout()), SmallConvNet().out_features

        monkeypatch.setattr(mah_train, "build_backbone", with_dropout)
    root = noise_lists(tmp_path / "data") if dataset != "digits" else None
    data = ["--data-root", root] if root else []
    argv = ["--max-iter", 3, "--eval-every", 3, *data, *extra]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    mah.main(smoke(whole, *argv, dataset=dataset))
    saved, real = [], engine.save_checkpoint

    def save_then_die(path, state):
        real(path, state)
        saved.append((state["bits"], state["iteration"]))
        if saved[-1] == (6, 1):
            raise KeyboardInterrupt

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    monkeypatch.setattr(sys, "argv", ["t.py"])
    with pytest.raises(KeyboardInterrupt):
        mah.main(smoke(cut, *argv, dataset=dataset))
    monkeypatch.setattr(engine, "save_checkpoint", real)
    torch.manual_seed(12345)  # what the resuming process drew before must not matter
    resume = mah.get_args_parser().parse_args(["--resume", str(cut)])
    resume.paper, resume.script = PAPER, "test"
    mah.main(resume)
    for bits in (4, 6):
        a, b = (json.load(open(run / "results" / f"{dataset}_MAH-cascade_{bits}bits.json")) for run in (whole, cut))
        assert a["metrics"] == b["metrics"], bits
    va, vb = (torch.load(run / "checkpoint.pt", weights_only=True)["V"] for run in (whole, cut))
    assert all(torch.equal(x, y) for x, y in zip(va, vb))


@pytest.mark.parametrize("lists", [False, True])
def test_shares_of_a_batch_are_the_batch_split(tmp_path, lists):
    """Under torchrun each process asks the feeder for its share of every batch (every second
    item, from its rank): the shares must be exactly the whole batch's items, positions and
    augmented images, split; for list files only the share's images are read. Catches shares
    drawn with their own random draws (a process would see other crops than one process)."""
    data = load_data("nuswide21", str(noise_lists(tmp_path))) if lists else load_data("digits")
    feeder = Feeder(data, "database", torch.device("cpu"), True, resize=32, crop=28, augment=True, workers=0)
    order = np.arange(11)[::-1].copy()

    def batches(share=None):
        return list(feeder.batches(order, 4, torch.Generator().manual_seed(5), share=share))

    read = []
    if lists:
        files = feeder.files

        class Counting(torch.utils.data.Dataset):
            def __len__(self):
                return len(files)

            def __getitem__(self, i):
                read.append(i)
                return files[i]

        feeder.files = Counting()
    whole = batches()
    shares = [batches(slice(rank, 4, 2)) for rank in (0, 1)]
    assert [len(p) for p, _ in whole] == [4, 4, 3]
    if lists:  # 11 for the whole batches, then 6 and 5 for the two shares
        assert len(read) == 22 and sorted(read[11:17]) == sorted(order[[0, 2, 4, 6, 8, 10]].tolist())
    for (pos, x), (pos0, x0), (pos1, x1) in zip(whole, *shares):
        assert torch.equal(pos[0::2], pos0) and torch.equal(pos[1::2], pos1)
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
