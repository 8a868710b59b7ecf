"""Train MMHH (Kang et al., ICCV 2019), or the HashNet pair loss with --distance_type Hamming.

    python train_mmhh.py --s_dataset cifar10 --data_root ../shared/data/cifar10-jpeg.tar.gz --preset cpu-small --hash_bit 16
"""
from utils.errors import run
from utils.mmhh import get_train_parser, train_main

if __name__ == "__main__":
    run(train_main, get_train_parser().parse_args())
