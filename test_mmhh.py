"""Test a snapshot written by train_mmhh.py: MAP@H<=radius, or MAP@TopK with --radius 0.

    python test_mmhh.py --model_path snapshot/hash/empty_cifar10_cifar10_iter_05000 --radius 2
"""
from utils.errors import run
from utils.mmhh import get_test_parser, test_main

if __name__ == "__main__":
    run(test_main, get_test_parser().parse_args())
