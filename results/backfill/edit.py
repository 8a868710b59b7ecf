"""What the backfill scripts of results files share: each names the files on its command line,
changes those that need it, and says file by file what it did."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from utils.errors import run  # noqa: E402
from utils.runs import read_json, write_json  # noqa: E402


def backfill(doc, keys, change):
    """The command line of a backfill script whose docstring is `doc`: every results file named
    is read (it must hold `keys`); `change(record)` edits the record in place and returns what
    it did, or returns None and the file is left as it is."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="results files of train_mmhh.py runs")
    run(each, p.parse_args().results, keys, change)


def each(paths, keys, change):
    for path in paths:
        record = read_json(path, "results file", keys=keys)
        done = change(record)
        if done is None:
            print(f"{path}: left as it is")
            continue
        write_json(path, record)
        print(f"{path}: {done}")
