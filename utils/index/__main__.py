from utils.errors import run
from utils.index.cli import get_args_parser, main

run(main, get_args_parser().parse_args())
