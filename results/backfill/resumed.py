"""Give the results files of train_mmhh.py runs that finished under --resume, written before
a resumed run recorded the command that started it, that command: the one recorded is
moved to "resumed_by", and "command" becomes it without --resume, but only where that
command, parsed as train_mmhh.py parses it, gives every argument the record holds (so it
starts the same run).

    python results/backfill/resumed.py $(grep -rl --include "*.json" -- --resume results)

A file that already has "resumed_by", that is not of a train_mmhh.py run, or whose command
without --resume would start another run, is left as it is.
"""
import argparse
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from utils import options  # noqa: E402
from utils.errors import run  # noqa: E402
from utils.mmhh import get_train_parser  # noqa: E402
from utils.mmhh.args import RESUME_MAY_CHANGE, resolve  # noqa: E402
from utils.runs import read_json, write_json  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="results files of train_mmhh.py runs")
    return p


def started_by(command, recorded):
    """`command` without --resume where it gives the arguments `recorded`, else None."""
    words = shlex.split(command)
    if words[:2] != ["python", "train_mmhh.py"] or "--resume" not in words:
        return None
    words = [w for w in words if w != "--resume"]
    parsed = options.public(resolve(get_train_parser().parse_args(words[2:])))
    differ = [k for k in set(parsed) | set(recorded) if k not in RESUME_MAY_CHANGE and parsed.get(k) != recorded.get(k)]
    return None if differ else " ".join(map(shlex.quote, words))


def main(args):
    for path in args.results:
        record = read_json(path, "results file", keys=("command", "args"))
        start = None if "resumed_by" in record else started_by(record["command"], record["args"])
        if start is None:
            print(f"{path}: left as it is")
            continue
        record["resumed_by"], record["command"] = record["command"], start
        write_json(path, record)
        print(f"{path}: command without --resume, the one as run under resumed_by")


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
