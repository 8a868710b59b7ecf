"""Runs of docs/claims.md that failed (a crash, a NaN loss): results/failures.jsonl, one JSON
object a line, written by `python -m utils.report.filing --failed REASON FOLDER`. As the rule
declares, such a run is reported as failed, its seed drops out of its pairs, a failed tuning
row counts as filed but is never chosen, and the plan does not make the run again.

Each line names the run by what it is in the plan: {"run": {"kind": "mah", "dataset",
"method", "bits", "seed"} | {"kind": "tuning", "dataset", "bits", "method", "row"} | {"kind":
"final", "dataset", "optimiser", "protocol", "rate", "method", "seed"}, "reason", "folder",
"command", "git_commit"}."""
import json
import os

from utils.errors import UserError

FILE = "failures.jsonl"
KEYS = {"mah": ("dataset", "method", "bits", "seed"), "tuning": ("dataset", "bits", "method", "row"),
        "final": ("dataset", "optimiser", "protocol", "rate", "method", "seed")}


def key(run):
    """(kind, identity...) of a failed run's "run" object, as the plan names its runs."""
    return (run["kind"], *(run[k] for k in KEYS[run["kind"]]))


def read(results):
    """The failures recorded under the results folder `results` ([] without the file); a line
    that is not one is a UserError naming it."""
    path = os.path.join(results, FILE)
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key(entry["run"])
                entry["reason"].strip(), entry["folder"].strip()
            except (ValueError, KeyError, TypeError, AttributeError):
                raise UserError(f"{path} line {n} is no failure record (a JSON object with the run, as the plan "
                                "names it, its folder and the reason); correct or remove the line") from None
            out.append(entry)
    return out


def failed(entries, kind):
    """{identity: reason} of the recorded failures of one kind ("mah", "tuning" or "final")."""
    return {key(e["run"])[1:]: e["reason"] for e in entries if e["run"]["kind"] == kind}
