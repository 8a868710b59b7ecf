"""Give the results files of train_mmhh.py runs that recorded their test output by an absolute
path of the machine they ran on the path relative to the checkout they ran in: the run's
--test_output_dir when that was relative, else the output folder's name alone (as train_mmhh.py
and the filing now record it).

    python results/backfill/test_outputs.py results/*mmhh*/**/*.json

A file whose test_output is already relative is left as it is.
"""
import os

from edit import backfill


def relative(record):
    output, folder = record.get("test_output"), record["args"].get("test_output_dir")
    if not isinstance(output, str) or not os.path.isabs(output):
        return None
    name = os.path.basename(output)
    record["test_output"] = os.path.join(folder, name) if folder and not os.path.isabs(folder) else name
    return f"test_output {record['test_output']}"


if __name__ == "__main__":
    backfill(__doc__, ("args",), relative)
