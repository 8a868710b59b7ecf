r"""Train MMHH's hashing network (Kang et al., ICCV 2019) with HashNet's pair loss, the released
default (--distance_type Hamming), or the paper's MMHH loss (--distance_type MMHH).

    python train_mmhh.py --s_dataset cifar10 --data_root ../shared/data/cifar10-jpeg.tar.gz \
        --preset cpu-small --hash_bit 16 --distance_type MMHH
"""
from utils.errors import run
from utils.mmhh import get_train_parser, train_main

if __name__ == "__main__":
    run(train_main, get_train_parser().parse_args())
