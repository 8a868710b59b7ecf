"""Add what the Hamming balls hold (utils.retrieval.ball_statistics) to MMHH results files
written before the test recorded it, from the test outputs that the training run saved
(test_code.npy and database_code.npy: the outputs before sign, whose signs are the codes).

    python results/backfill/balls.py --test-output runs/x/test_output/x_iter_02000 results/.../cifar10_MMHH_32bits.json

Both test conventions of one snapshot test the same codes, so one folder serves the
results file of the training run and that of its `test_mmhh.py --opt-test`. The outputs
must be those the file's metrics came from: the numbers of queries and database items
are checked, and a file that already holds the statistics is left as it is.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from utils.errors import UserError, run  # noqa: E402
from utils.models import to_codes  # noqa: E402
from utils.retrieval import ball_statistics  # noqa: E402
from utils.runs import read_json, write_json  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--test-output", required=True,
                   help="folder of a training run's test outputs (test_code.npy, database_code.npy) (required)")
    p.add_argument("results", nargs="+", help="results files of that snapshot's tests")
    return p


def codes(folder, name):
    path = os.path.join(folder, f"{name}.npy")
    try:
        outputs = np.load(path)  # items x K, before sign
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is missing or not a .npy file ({type(e).__name__}): give --test-output the "
                        "test_output folder of the run that wrote these results") from e
    return to_codes(torch.as_tensor(outputs)).numpy().astype(np.float32)  # the test's sign: 0 -> +1


def main(args):
    q, d = codes(args.test_output, "test_code"), codes(args.test_output, "database_code")
    records = {path: read_json(path, "results file", keys=("metrics",)) for path in args.results}
    for path, record in records.items():  # every file is checked before any is written
        m = record["metrics"]
        if (m.get("queries"), m.get("database")) != (len(q), len(d)):
            raise UserError(f"{path} tested {m.get('queries')} queries and {m.get('database')} database items, "
                            f"{args.test_output} holds {len(q)} and {len(d)}: give the test outputs of its own run")
    for path, record in records.items():
        if "balls" in record["metrics"]:
            print(f"{path}: already has the ball statistics")
            continue
        record["metrics"]["balls"] = ball_statistics(q, d, record["metrics"]["radius"])
        write_json(path, record)
        print(f"{path}: {record['metrics']['balls']}")


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
