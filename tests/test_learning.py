"""Learning tests: short runs on the embedded digits (10 classes, so a random ranking scores a
MAP of about 0.10) must reach a MAP far above chance. A sign error in a loss, DCC pushing
codes the wrong way, or an optimiser that never steps leaves them near 0.10; the measured
values are in each docstring (2-core CPU, seed 0)."""
import pytest
import torch

from utils import mah, mmhh
from utils.mmhh import common as mmhh_common
from utils.models import HashModel

CHANCE = 0.10


@pytest.mark.parametrize("arch", ["flat", "cascade"])
def test_mah_learns_from_the_zero_start(tmp_path, arch):
    """8 bits, V from zeros (the paper's start), the small convnet with Adam at 1e-3, five outer
    iterations of 400 sampled items: tie-aware MAP 0.60 (flat) and 0.53 (cascade), about 15 s
    each. Threshold 0.35."""
    parser = mah.get_args_parser()
    parser.set_defaults(script="test", arch=arch, dataset="digits", paper=dict(
        bits="8", aux_for={}, head_weights="4,2,1", gamma=200, max_iter=41, epochs=3, batch_size=64,
        num_samples=2000, eval_every=1))
    args = parser.parse_args(["--preset", "cpu-small", "--gpu", "cpu", "--max-iter", "5", "--num-samples", "400",
                              "--batch-size", "50", "--v-init", "zeros", "--v-hold", "0", "--lr-steps", "4",
                              "--eval-every", "5", "--output-dir", str(tmp_path)])
    metrics = mah.main(args)[0]["metrics"]
    assert metrics["map_tie_aware"] > 0.35 > 3 * CHANCE


def mlp_network(name, bits, pretrained, weights=None, seed=0):
    """A one-hidden-layer network on the pixels: digits are nearly linearly separable, so what is
    tested is the loop (loss, optimiser, schedule), not a backbone's speed."""
    torch.manual_seed(seed)
    return HashModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 128), torch.nn.ReLU()), 128,
                     bits)


@pytest.mark.parametrize("loss, iters, extra, floor", [
    ("Hamming", 150, ["--similar_weight", "auto"], 0.45),
    ("MMHH", 300, ["--gamma", "5"], 0.25),
])
def test_mmhh_losses_learn(tmp_path, monkeypatch, loss, iters, extra, floor):
    """16 bits, Adam at 3e-4, batches of 64: HashNet's loss (auto weight, 150 iterations) reaches
    MAP@TopK 0.65, the MMHH loss (gamma 5, 300 iterations) 0.37; about 10 and 20 s."""
    monkeypatch.setattr(mmhh_common, "build_network", mlp_network)
    args = mmhh.get_train_parser().parse_args([
        "--s_dataset", "digits", "--preset", "cpu-small", "--gpu_id", "cpu", "--hash_bit", "16", "--num_iters",
        str(iters), "--lr", "3e-4", "--distance_type", loss, "--radius", "2", "--test_sample_ratio", "1",
        "--log_dir", str(tmp_path / "log"), "--snap_path", str(tmp_path / "snap"), "--test_output_dir",
        str(tmp_path / "out"), *extra])
    metrics = mmhh.train_main(args)["metrics"]
    assert metrics["map_topk"] > floor > 2 * CHANCE
