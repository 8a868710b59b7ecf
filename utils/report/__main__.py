"""`python -m utils.report`: rewrite the result tables and figures from results/."""
from utils.errors import run
from utils.report.main import get_args_parser, main

run(main, get_args_parser().parse_args())
