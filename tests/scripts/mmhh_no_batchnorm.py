"""train_mmhh.py with a backbone that has no batch norm and no dropout, for the torchrun
tests (see mah_no_batchnorm.py: with these, one process and several must agree).
Arguments as for train_mmhh.py; DIE_AFTER_ITERATION=t: rank 0 dies right after writing
the checkpoint of iteration t (an epoch end)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import torch  # noqa: E402

from utils import mmhh  # noqa: E402
from utils.mmhh import common, engine  # noqa: E402
from utils.models import HashModel  # noqa: E402
from utils.errors import run  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mah_no_batchnorm import backbone, dying_save  # noqa: E402


def build_network(name, bits, pretrained, weights=None, seed=0):
    torch.manual_seed(seed)
    return HashModel(*backbone(), bits)


if __name__ == "__main__":
    common.build_network = build_network
    if "DIE_AFTER_ITERATION" in os.environ:
        engine.save_checkpoint = dying_save(int(os.environ["DIE_AFTER_ITERATION"]))
    run(mmhh.train_main, mmhh.get_train_parser().parse_args())
