"""Give the results files of train_mmhh.py runs that finished under --resume, written before
a resumed run recorded the command that started it, that command: the one recorded is
moved to "resumed_by", and "command" becomes it without --resume, but only where that
command, parsed as train_mmhh.py parses it, gives every argument the record holds (so it
starts the same run).

    python results/backfill/resumed.py $(grep -rl --include "*.json" -- --resume results)

A file that already has "resumed_by", that is not of a train_mmhh.py run, or whose command
without --resume would start another run, is left as it is.
"""
import shlex

from edit import backfill  # first: it puts the checkout on the path
from utils import options
from utils.mmhh import get_train_parser
from utils.mmhh.args import RESUME_MAY_CHANGE, resolve


def started_by(command, recorded):
    """`command` without --resume where it gives the arguments `recorded`, else None."""
    words = shlex.split(command)
    if words[:2] != ["python", "train_mmhh.py"] or "--resume" not in words:
        return None
    words = [w for w in words if w != "--resume"]
    parsed = options.public(resolve(get_train_parser().parse_args(words[2:])))
    differ = [k for k in set(parsed) | set(recorded) if k not in RESUME_MAY_CHANGE and parsed.get(k) != recorded.get(k)]
    return None if differ else " ".join(map(shlex.quote, words))


def resumed(record):
    start = None if "resumed_by" in record else started_by(record["command"], record["args"])
    if start is None:
        return None
    record["resumed_by"], record["command"] = record["command"], start
    return "command without --resume, the one as run under resumed_by"


if __name__ == "__main__":
    backfill(__doc__, ("command", "args"), resumed)
