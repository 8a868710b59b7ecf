"""The GPU-ready training path, checked on the CPU: --amp bf16 (the backbone alone under
bfloat16 autocast), the list-file feeder's one DataLoader with lasting workers, losses read
back from the device once per log line instead of once per batch, plain progress lines where
stderr is no terminal, and the dry run of bench/gpu_check.py."""
import io
import json
import os
import subprocess
import sys
import warnings
from contextlib import redirect_stderr

import numpy as np
import pytest
import torch

from utils import mah, mmhh, progress, records
from utils.data.feeder import Feeder, default_workers
from utils.data.images import FileImages, Normalise, file_transform
from utils.data.loader import load_data
from utils.errors import UserError
from utils.mah import engine as mah_engine
from utils.mah.adsh import ADSHLoss
from utils.mmhh import common as mmhh_common
from utils.mmhh import engine as mmhh_engine
from utils.models import HashModel, MAHNet, SmallConvNet, autocast

from test_learning import CHANCE, mlp_network
from test_mah_training import noise_lists, smoke
from test_mmhh import log_lines, read_json, train_args

DIGITS = ("--s_dataset", "digits")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------- --amp

@pytest.mark.parametrize("kind", ["flat", "cascade", "mmhh"])
def test_under_bf16_autocast_the_backbone_is_bfloat16_and_the_heads_float32(kind):
    """Hooks on the backbone's output and the heads' input: under autocast the backbone gives
    bfloat16 and the heads get, and give, float32; the MAH loss and the U update then run as in
    float32. Catches the features not cast (the heads' matmul, ADSHLoss's u @ gram and
    U[pos] = u failed on bf16 against float32) or the heads left under autocast (bf16 outputs)."""
    torch.manual_seed(0)
    backbone = SmallConvNet(width=4)
    model = HashModel(backbone, 32, 8) if kind == "mmhh" else MAHNet(backbone, 32, (4, 8, 16), kind == "cascade")
    heads = model.hash_layer if kind == "mmhh" else model.heads
    seen = {}
    backbone.register_forward_hook(lambda module, inputs, output: seen.update(backbone=output.dtype))
    heads.register_forward_pre_hook(lambda module, inputs: seen.update(heads=inputs[0].dtype))
    x = torch.randn(6, 3, 32, 32)
    with autocast("bf16", "cpu"):
        out = model(x)
    outputs = [out] if kind == "mmhh" else out
    assert seen == {"backbone": torch.bfloat16, "heads": torch.float32}
    assert all(o.dtype == torch.float32 for o in outputs)
    if kind != "mmhh":
        V = torch.ones(20, 4)
        loss = ADSHLoss(200)(outputs[0], V, torch.arange(6), V.T @ V, torch.zeros(6, 4), 0.0)
        loss.backward()
        U = torch.zeros(20, 4)
        U[torch.arange(6)] = outputs[0].detach()
    with autocast("off", "cpu"):
        model(x)
    assert seen == {"backbone": torch.float32, "heads": torch.float32}


def backbone_dtypes(model_class, monkeypatch):
    """The dtypes of the backbone outputs of every training forward of the networks built."""
    seen = []
    init = model_class.__init__

    def spy(self, backbone, *args, **kw):
        init(self, backbone, *args, **kw)
        backbone.register_forward_hook(lambda m, i, o: seen.append(o.dtype) if m.training else None)

    monkeypatch.setattr(model_class, "__init__", spy)
    return seen


def test_bf16_training_learns_as_float32_does(tmp_path, monkeypatch):
    """test_learning's HashNet-loss check (16 bits, the pixel MLP, 150 iterations, MAP@TopK above
    0.45; float32 reaches 0.65) run with --amp bf16: 0.64, and every training forward of the
    backbone was bfloat16. Catches --amp ignored, or a bf16 path that no longer learns."""
    monkeypatch.setattr(mmhh_common, "build_network", mlp_network)
    seen = backbone_dtypes(HashModel, monkeypatch)
    args = mmhh.get_train_parser().parse_args([
        "--s_dataset", "digits", "--preset", "cpu-small", "--gpu_id", "cpu", "--hash_bit", "16", "--num_iters", "150",
        "--lr", "3e-4", "--distance_type", "Hamming", "--radius", "2", "--test_sample_ratio", "1", "--similar_weight",
        "auto", "--amp", "bf16", "--log_dir", str(tmp_path / "log"), "--snap_path", str(tmp_path / "snap"),
        "--test_output_dir", str(tmp_path / "out")])
    metrics = mmhh.train_main(args)["metrics"]
    assert len(seen) == 150 and set(seen) == {torch.bfloat16}
    assert metrics["map_topk"] > 0.45 > 2 * CHANCE


def test_amp_is_off_by_default_recorded_and_kept_by_a_resume(tmp_path, monkeypatch):
    """--amp is off unless given (both methods); a MAH run records it in run.json and its results
    record, trains its backbone in bf16 and logs the seconds of its phases; a resume that names
    another --amp is refused in one line, of a run from before --amp (float32) too; a results file
    from before --amp reads as off. Catches a default of bf16, the choice lost on a resume, or
    old records read as something else."""
    assert smoke(tmp_path).amp == "off" and train_args(tmp_path).amp == "off"
    seen = backbone_dtypes(MAHNet, monkeypatch)
    out = tmp_path / "run"
    mah.main(smoke(out, "--max-iter", 1, "--eval-every", 1, "--amp", "bf16"))
    assert seen and set(seen) == {torch.bfloat16}
    assert read_json(out / "run.json")["amp"] == "bf16"
    record = read_json(out / "results" / "digits_MAH-cascade_4bits.json")
    assert records.check(record) == "mah" and records.field(record, "amp") == "bf16" and record["amp"] == "bf16"
    [line] = log_lines(out / "log.jsonl")
    assert set(line["phase_seconds"]) == {"training", "v_update", "evaluation"}
    assert all(s >= 0 for s in line["phase_seconds"].values())
    with pytest.raises(UserError, match=r"--amp off \(the run's: bf16\)"):
        mah.main(smoke(out, "--resume", out, "--amp", "off"))
    run = read_json(out / "run.json")
    run["amp"] = "off"
    (out / "run.json").write_text(json.dumps({k: v for k, v in run.items() if k != "amp"}))
    with pytest.raises(UserError, match=r"--amp bf16 \(the run's: off\)"):
        mah.main(smoke(out, "--resume", out, "--amp", "bf16"))
    # a results file from before --amp: this run's record without the field (a committed one would
    # be replaced once its cell is run again)
    before = tmp_path / "before_amp.json"
    before.write_text(json.dumps({k: v for k, v in record.items() if k != "amp"}))
    _, old = records.read_record(str(before))
    assert "amp" not in old and records.field(old, "amp") == "off"


def test_train_mmhh_refuses_another_amp_on_resume(tmp_path):
    """train_mmhh.py: run.json and the results record say --amp; a resume with another is refused
    in one line. Catches --amp among the options a resume may change."""
    record = mmhh.train_main(train_args(tmp_path, *DIGITS))
    assert record["amp"] == "off" and read_json(tmp_path / "log" / "empty_digits_digits" / "run.json")["amp"] == "off"
    with pytest.raises(UserError, match=r"--amp bf16 \(the run's: off\)"):
        mmhh.train_main(train_args(tmp_path, *DIGITS, "--resume", "--amp", "bf16"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_batches_come_through_pinned_memory_and_the_heads_stay_float32(tmp_path):
    """On a GPU: the list-file feeder's loader pins memory and its batches land on the device,
    and under bf16 autocast the heads give float32 there too. Catches pinned memory off on CUDA,
    or autocast switched off for the CPU's device type only."""
    data = load_data("nuswide21", str(noise_lists(tmp_path, n=8)))
    feeder = Feeder(data, "database", "cuda", True, 40, 32, augment=True, workers=1)
    [(_, x)] = list(feeder.batches(np.arange(8), 8, torch.Generator().manual_seed(0)))
    assert feeder.loader.pin_memory and x.is_cuda
    model = MAHNet(SmallConvNet(width=4), 32, (4, 8, 16), True).cuda()
    seen = []
    model.backbone.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    with autocast("bf16", x.device):
        outputs = model(x)
    assert seen == [torch.bfloat16] and all(o.dtype == torch.float32 for o in outputs)


# ----------------------------------------------------------------------------- loading

class SeedEachItem(torch.utils.data.Dataset):
    """Item k of `order` transformed under the global generator seeded with seed + k: what the
    feeder fed every DataLoader it built, one per pass, before it kept one."""

    def __init__(self, images, order, seed):
        self.images, self.order, self.seed = images, order, seed

    def __len__(self):
        return len(self.order)

    def __getitem__(self, k):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + k)
            return self.images[int(self.order[k])]


def loader_per_pass(images, passes, batch_size, seed):
    """The batches of `passes` (orders) drawn from one generator seeded `seed` the way the feeder
    drew them with a DataLoader built per pass: the pass's seed, then that DataLoader's own draw."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for order in passes:
        first = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
        groups = [list(range(s, min(s + batch_size, len(order)))) for s in range(0, len(order), batch_size)]
        loader = torch.utils.data.DataLoader(SeedEachItem(images, order, first), batch_sampler=groups,
                                             generator=generator)
        batches.append([x for x, _ in loader])
    return batches


@pytest.mark.parametrize("workers", [0, 2])
def test_one_loader_with_lasting_workers_gives_the_batches_of_a_loader_per_pass(tmp_path, workers, monkeypatch):
    """Two training passes of list-file images from one generator (two epochs of an outer
    iteration): the feeder builds one DataLoader, its worker processes are the same in both
    passes, and its crops are those of a DataLoader built per pass (derived here with plain
    DataLoaders). Catches a loader rebuilt every pass, workers restarted, or crop seeds that
    moved (a run would no longer see the images it saw before)."""
    data = load_data("nuswide21", str(noise_lists(tmp_path)))
    passes = [np.arange(24)[::-1].copy(), np.random.default_rng(1).permutation(24)]
    images = FileImages(data.database.list, file_transform(40, 32, train=True, scale=(0.75, 1.0)))
    normalise = Normalise(data.info.mean, data.info.std, "cpu")
    want = [[normalise(x) for x in batches]
            for batches in loader_per_pass(images, passes, 10, seed=7)]
    built = []

    class Counted(torch.utils.data.DataLoader):
        def __init__(self, *args, **kw):
            built.append(kw)
            super().__init__(*args, **kw)

    monkeypatch.setattr(torch.utils.data, "DataLoader", Counted)
    feeder = Feeder(data, "database", "cpu", True, 40, 32, augment=True, workers=workers, crop_scale=(0.75, 1.0))
    generator = torch.Generator().manual_seed(7)
    pids = []
    for order, expected in zip(passes, want):
        got = [x for _, x in feeder.batches(order, 10, generator)]
        assert len(got) == len(expected) == 3 and all(torch.equal(a, b) for a, b in zip(got, expected))
        if workers:
            pids.append([w.pid for w in feeder.loader._iterator._workers])
    assert len(built) == 1 and built[0]["persistent_workers"] == (workers > 0) and not built[0]["pin_memory"]
    assert not workers or (len(pids[0]) == workers and pids[0] == pids[1])


def test_the_default_workers_are_the_cores_there_are(tmp_path):
    """--workers defaults to the usable cores (at most 4) in both methods, and a list-file pass
    with that many workers makes PyTorch warn of nothing; with one worker more than cores it
    warns (what the old default of 4 printed twice on 2 cores). Catches a fixed default again."""
    cores = len(os.sched_getaffinity(0))
    assert default_workers() == min(4, cores)
    assert smoke(tmp_path, "--workers", "0").workers == 0
    mah_workers = mah.get_args_parser().parse_args([]).workers
    assert mah_workers == mmhh.get_train_parser().parse_args([]).workers == min(4, cores)
    data = load_data("nuswide21", str(noise_lists(tmp_path, n=8)))

    def warned(workers):
        feeder = Feeder(data, "database", "cpu", False, 32, 32, workers=workers)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            list(feeder.batches(np.arange(8), 4))
        return [str(w.message) for w in caught if "worker" in str(w.message)]

    assert warned(default_workers()) == []
    if cores <= 8:  # one process per worker: not dozens of them on a large machine
        assert warned(cores + 1)


# ------------------------------------------------------------------ reads from the device

def count_reads(monkeypatch):
    """A list that grows by one at every read of a float or bool tensor's values into Python
    (item, tolist, float, bool, cpu, numpy): on a GPU each of these waits for the device."""
    reads = []
    for name in ("item", "tolist", "__float__", "__bool__", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, **kw):
            if self.is_floating_point() or self.dtype == torch.bool:
                reads.append(1)
            return _original(self, *args, **kw)

        monkeypatch.setattr(torch.Tensor, name, spy)
    return reads


def reads_while(module, function, monkeypatch, run):
    """How many reads `run()` makes inside calls of module.function."""
    inside, counted = [False], [0]
    original = getattr(module, function)

    def wrapped(*args, **kw):
        inside[0] = True
        start = len(reads)
        try:
            return original(*args, **kw)
        finally:
            counted[0] += len(reads) - start
            inside[0] = False

    monkeypatch.setattr(module, function, wrapped)
    reads = count_reads(monkeypatch)
    run()
    monkeypatch.undo()
    return counted[0]


def test_losses_are_read_once_per_log_line_not_per_batch(tmp_path, monkeypatch):
    """MAH: an outer iteration of 12 batches reads as many values from the device as one of 6;
    MMHH, DCH and HashNet's loss under the `auto` similar weight: 12 iterations read as many as 6
    when both log once. Catches a per-batch .item() or finiteness check (a host synchronisation
    per batch on a GPU) coming back, or the auto weight (or HashNet's share of the normaliser)
    read back as a Python number every batch."""
    mah_reads = [reads_while(mah_engine, "train_one_iteration", monkeypatch, lambda b=batch: mah.main(
        smoke(tmp_path / f"mah{b}", "--max-iter", 1, "--eval-every", 1, "--epochs", 2, "--batch-size", b)))
        for batch in (16, 8)]
    assert mah_reads[0] == mah_reads[1] > 0
    for loss in ("MMHH", "DCH", "Hamming"):
        mmhh_reads = [reads_while(mmhh_engine, "train", monkeypatch, lambda n=n: mmhh.train_main(train_args(
            tmp_path / f"{loss}{n}", *DIGITS, "--distance_type", loss, "--similar_weight", "auto", "--num_iters", n,
            "--log_every", 100))) for n in (6, 12)]
        assert mmhh_reads[0] == mmhh_reads[1] > 0, loss


# ------------------------------------------------------------------------------ progress

class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("where", ["file", "memory", "terminal"])
def test_plain_progress_lines_where_stderr_is_a_file_or_pipe(tmp_path, monkeypatch, where):
    """stderr a file (a pipe, nohup's file): with the interval at 0 every outer iteration (MAH)
    and iteration (MMHH) prints a plain line with its position and loss; at the real interval
    (30 s) a short run prints none. On a terminal only tqdm's bar; held in memory (a caller that
    captures the messages, as the one-line error tests do), nothing. Catches a run silent under
    nohup or a scheduler, plain lines beside the bar, or lines at every step whatever the interval."""
    real = progress.INTERVAL

    def run(interval):
        monkeypatch.setattr(progress, "INTERVAL", interval)
        with open(tmp_path / f"stderr{interval}", "w+") if where == "file" else \
                (io.StringIO() if where == "memory" else Terminal()) as err:
            with redirect_stderr(err):
                mah.main(smoke(tmp_path / f"mah{interval}", "--max-iter", 2, "--eval-every", 2))
                mmhh.train_main(train_args(tmp_path / f"mmhh{interval}", *DIGITS))
            err.seek(0)
            return [line for line in err.read().replace("\r", "\n").splitlines() if "elapsed" in line]

    plain = run(0)
    if where != "file":
        assert plain == []
        return
    assert [line.split(",")[0] for line in plain] == [
        "4 bits: outer iteration 1 of 2", "4 bits: outer iteration 2 of 2", "Hamming 48 bits: iteration 1 of 3",
        "Hamming 48 bits: iteration 2 of 3", "Hamming 48 bits: iteration 3 of 3"], plain
    assert "loss" in plain[1] and "loss" in plain[4]
    assert real == 30 and run(real) == []


# ---------------------------------------------------------------------------- gpu check

def test_the_gpu_check_dry_run(tmp_path):
    """bench/gpu_check.py --dry-run: every stage at toy size on the CPU, one JSON summary with
    each stage's figures. Catches a stage that fails before a GPU would ever see it."""
    out = tmp_path / "summary.json"
    run = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = read_json(out)
    assert summary["dry_run"] is True
    stages = summary["stages"]
    assert set(stages) == {"environment", "cuda_tests", "backbones", "mah_paper", "list_files", "cpu_pretrained",
                           "mmhh_alexnet"}
    assert all(stage["status"] == "ok" for stage in stages.values()), stages
    paper = stages["mah_paper"]
    assert [set(i) for i in paper["off"]["iterations"]] == [
        {"training", "v_update", "evaluation", "checkpoint", "training_images_per_s"}] * 3
    assert set(stages["backbones"]["resnet50"]) >= {"fp32", "fp32_channels_last", "bf16_channels_last"}
