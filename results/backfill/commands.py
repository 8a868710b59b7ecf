"""Give the results files of train_mmhh.py runs made while --distance_type defaulted to MMHH the
flag their command relied on, so that the command reproduces the run under today's default
(Hamming, the released code's). The command as it was run stays under "command_as_run".

    python results/backfill/commands.py $(find results/cifar10-mmhh-cpu-small -name "*.json")

A file whose command already names --distance_type, or that is not a train_mmhh.py run of
the MMHH loss, is left as it is.
"""
from edit import backfill


def with_default(record):
    command = record["command"]
    if ("train_mmhh.py" not in command or record["args"].get("distance_type") != "MMHH"
            or "--distance_type" in command or "--distance-type" in command):
        return None
    record["command_as_run"], record["command"] = command, command + " --distance_type MMHH"
    return "command given --distance_type MMHH"


if __name__ == "__main__":
    backfill(__doc__, ("command", "args"), with_default)
