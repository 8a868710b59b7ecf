"""The results record: one schema for the files both methods write under results/, built by
one function and checked by the same code that the report reads them with.

A record is one JSON object per (data set, method, bits, seed) run. `FIELDS` are what every
record has; `METRICS` what each paper's metrics hold. Everything else a record carries (the
arguments, the command, the commit, the thread counts, the protocol) says how the number was
made, so that it can be made again.
"""
import json
import re

import torch

from utils import hamming_kernels
from utils.runs import command_line, device_name, git_commit

STRING, INTEGER, NUMBER, OBJECT, BOOLEAN = (str,), (int,), (int, float), (dict,), (bool,)
TYPE_NAMES = {STRING: "a string", INTEGER: "an integer", NUMBER: "a number", OBJECT: "an object",
              BOOLEAN: "true or false"}
FIELDS = {"dataset": STRING, "method": STRING, "bits": INTEGER, "preset": STRING, "backbone": STRING,
          "seed": INTEGER, "metrics": OBJECT, "seconds": NUMBER, "device": STRING}
METRICS = {
    "mah": {"map": NUMBER, "map_tie_aware": NUMBER, "map_at_5000": NUMBER, "precision_at_5000": NUMBER},
    "mmhh": {"map_within_radius": NUMBER, "radius": INTEGER, "map_topk": NUMBER, "topk": INTEGER,
             "opt_test": BOOLEAN},
}
# fields added after results were first filed, and what a record written before them means
LATER = {"amp": "off"}  # trained in float32, as the papers


def thread_counts():
    """The thread counts a run computes with: its float sums follow them (docs/runs.md)."""
    return {"torch": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads(),
            "numba": hamming_kernels.thread_count(), "numba_layer": hamming_kernels.numba.config.THREADING_LAYER}


def results_record(dataset, method, bits, preset, backbone, seed, metrics, seconds, device, args, protocol,
                   command=None, **extra):
    """The record of one run's results: the schema's fields, then how they were made (the
    commit, the command, the arguments, the thread counts, the protocol) and `extra`."""
    return {"dataset": dataset, "method": method, "bits": bits, "preset": preset, "backbone": backbone,
            "seed": seed, "metrics": metrics, "seconds": round(seconds, 1), "device": device_name(device),
            "git_commit": git_commit(), "command": command or command_line(), "args": args,
            "threads": thread_counts(), "protocol": protocol, "amp": args.get("amp", LATER["amp"]), **extra}


def field(record, key):
    """A record's `key` (one of LATER), also of a record from before that field."""
    return record.get(key, LATER[key])


def has_type(value, types):
    # bool is an int in Python, but true/false is no bit length and no MAP
    return isinstance(value, types) and isinstance(value, bool) == (bool in types)


def check(record):
    """The kind of a record, "mah" or "mmhh"; ValueError saying what makes it unusable."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    for key, types in FIELDS.items():
        if key not in record:
            raise ValueError(f"no key {key!r}")
        if not has_type(record[key], types):
            raise ValueError(f"{key!r} is not {TYPE_NAMES[types]}")
    if "command" in record and not has_type(record["command"], STRING):
        raise ValueError(f"'command' is not {TYPE_NAMES[STRING]}")
    if record.get("paper") == "MMHH":
        kind = "mmhh"
    elif record["method"].startswith("MAH-") or record["method"] == "ADSH":
        kind = "mah"
    else:
        raise ValueError("neither a MAH record (method MAH-... or ADSH) nor an MMHH record (paper MMHH)")
    for key, types in METRICS[kind].items():
        if key not in record["metrics"]:
            raise ValueError(f"no key {key!r} in 'metrics'")
        if not has_type(record["metrics"][key], types):
            raise ValueError(f"metrics {key!r} is not {TYPE_NAMES[types]}")
    if record["bits"] < 1:
        raise ValueError(f"'bits' is {record['bits']}, not a code length")
    check_fractions(record["metrics"], "metrics")
    return kind


# MAP, precision and recall of every kind (map_topk, precision_at_5000, the curves' lists) and
# shares of the database or of the queries ("ball_database_share") are fractions
FRACTION = re.compile(r"^(map|precision|recall)|_share$")


def check_fractions(metrics, where):
    """Every number under a FRACTION key of `metrics` (nested objects and lists included) is
    in [0, 1]; ValueError naming the first that is not (a MAP of 17.9 was written in percent)."""
    for key, value in metrics.items():
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            at = f"{where} {key!r}" + (f" [{i}]" if isinstance(value, list) else "")
            if isinstance(v, dict):
                check_fractions(v, at)
            elif FRACTION.search(key) and has_type(v, NUMBER) and not 0 <= v <= 1:
                raise ValueError(f"{at} is {v}, outside [0, 1] (MAP, precision and recall are fractions, "
                                 "not percentages)")


def read_record(path):
    """(kind, record) of one results file; ValueError with the reason when it is no usable record."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except OSError as e:
        raise ValueError(f"unreadable ({e.strerror})") from e
    except ValueError as e:  # bad JSON, or bytes that are not UTF-8
        raise ValueError(f"not valid JSON ({e})") from e
    return check(record), record
