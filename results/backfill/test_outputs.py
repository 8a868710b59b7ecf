"""Give the results files of train_mmhh.py runs that recorded their test output by an absolute
path of the machine they ran on the path relative to the checkout they ran in: the run's
--test_output_dir when that was relative, else the output folder's name alone (as train_mmhh.py
and the filing now record it).

    python results/backfill/test_outputs.py results/*mmhh*/**/*.json

A file whose test_output is already relative is left as it is.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from utils.errors import run  # noqa: E402
from utils.runs import read_json, write_json  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="results files of train_mmhh.py runs")
    return p


def main(args):
    for path in args.results:
        record = read_json(path, "results file", keys=("args",))
        output, folder = record.get("test_output"), record["args"].get("test_output_dir")
        if not isinstance(output, str) or not os.path.isabs(output):
            print(f"{path}: left as it is")
            continue
        name = os.path.basename(output)
        record["test_output"] = os.path.join(folder, name) if folder and not os.path.isabs(folder) else name
        write_json(path, record)
        print(f"{path}: test_output {record['test_output']}")


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
