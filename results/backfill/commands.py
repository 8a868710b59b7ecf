"""Give the results files of train_mmhh.py runs made while --distance_type defaulted to MMHH the
flag their command relied on, so that the command reproduces the run under today's default
(Hamming, the released code's). The command as it was run stays under "command_as_run".

    python results/backfill/commands.py $(find results/cifar10-mmhh-cpu-small -name "*.json")

A file whose command already names --distance_type, or that is not a train_mmhh.py run of
the MMHH loss, is left as it is.
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
        record = read_json(path, "results file", keys=("command", "args"))
        command = record["command"]
        if ("train_mmhh.py" not in command or record["args"].get("distance_type") != "MMHH"
                or "--distance_type" in command or "--distance-type" in command):
            print(f"{path}: left as it is")
            continue
        record["command_as_run"], record["command"] = command, command + " --distance_type MMHH"
        write_json(path, record)
        print(f"{path}: command given --distance_type MMHH")


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
