"""MMHH: maximum-margin Hamming hashing (docs/MMHH.md). train_mmhh.py and test_mmhh.py call
`train_main` and `test_main` with their parsers' arguments; `load_encoder` serves a
snapshot's network to utils.index."""
from utils.mmhh.args import get_test_parser, get_train_parser
from utils.mmhh.encoder import load_encoder
from utils.mmhh.evaluate import test_main
from utils.mmhh.train import train_main

__all__ = ["get_test_parser", "get_train_parser", "load_encoder", "test_main", "train_main"]
