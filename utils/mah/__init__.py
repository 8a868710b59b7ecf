"""MAH: collaborative multi-head asymmetric hashing (docs/MAH.md). The six scripts call
`main(get_args_parser().parse_args())` with their own defaults; `load_encoder` serves a
finished run's network to utils.index."""
from utils.mah.args import get_args_parser
from utils.mah.encoder import load_encoder
from utils.mah.train import main

__all__ = ["get_args_parser", "load_encoder", "main"]
