"""MAH-cascade on the digits with a backbone that has no batch norm and no dropout, for the
torchrun tests: with these, one process and several see the same batches, so their runs
must agree (gloo has no SyncBatchNorm: with batch norm each process would normalise its
share of a batch by its own statistics). Arguments as for cascade_CIFAR-10.py.

DIE_AFTER_ITERATION=k in the environment: the process of rank 0 dies (exit status 3, no
clean-up) right after writing the checkpoint of outer iteration k, as a killed one would."""
import os
import sys

from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from utils import mah  # noqa: E402
from utils.mah import engine  # noqa: E402
from utils.mah import train as mah_train  # noqa: E402
from utils.errors import run  # noqa: E402


def backbone(*_):
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
    return net, 8 * 4 * 4


def dying_save(die_after):
    save = engine.save_checkpoint

    def save_then_die(path, state):
        save(path, state)
        if state["iteration"] == die_after:
            os._exit(3)

    return save_then_die


if __name__ == "__main__":
    mah_train.build_backbone = backbone
    if "DIE_AFTER_ITERATION" in os.environ:
        engine.save_checkpoint = dying_save(int(os.environ["DIE_AFTER_ITERATION"]))
    parser = mah.get_args_parser()
    parser.set_defaults(script="mah_no_batchnorm", arch="cascade", dataset="digits", paper=dict(
        bits="4", aux_for={4: (8, 16)}, head_weights="4,2,1", gamma=200, max_iter=41, epochs=3,
        batch_size=64, num_samples=2000, eval_every=1))
    run(mah.main, parser.parse_args())
