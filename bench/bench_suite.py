"""How long `make test` takes: the whole suite (pytest, tests/) in one process of its own, timed
whole, its counts read from pytest's JUnit XML; writes the JSON summary that `make report`
turns into docs/testing.md's sentence, and prints it. Run it with nothing else on the machine.

    python bench/bench_suite.py                                   # bench/out/bench_suite.json, then make report
    python bench/bench_suite.py --out /tmp/s.json -- tests/test_plan.py   # a part of the suite: no figure of it
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from utils.errors import UserError, run  # noqa: E402
from utils.runs import provenance, write_json  # noqa: E402

OUT = os.path.join(REPO, "bench", "out", "bench_suite.json")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help=f"the summary (default: {os.path.relpath(OUT, REPO)}; required with a selection)")
    p.add_argument("selection", nargs="*", help="after --: pytest arguments that run a part of the suite")
    return p


def counts(junit):
    """{tests, failed, skipped, passed} of a pytest JUnit XML file (its testsuite elements summed)."""
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = total["failures"] + total["errors"]
    return {"tests": total["tests"], "failed": failed, "skipped": total["skipped"],
            "passed": total["tests"] - failed - total["skipped"]}


def main(args):
    if args.selection and not args.out:
        raise UserError("a selection of tests times part of the suite: give --out PATH, so that the summary "
                        "make report reads stays the whole suite's")
    with tempfile.TemporaryDirectory() as tmp:
        junit = os.path.join(tmp, "suite.xml")
        tic = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                               *args.selection], cwd=REPO)
        seconds = time.perf_counter() - tic
        if not os.path.exists(junit):
            raise UserError(f"pytest wrote no report (exit status {done.returncode}); run make test to see why")
        found = counts(junit)
    if found["failed"]:
        raise UserError(f"{found['failed']} tests failed: a suite that fails has no time to report; run make test "
                        "and fix them first")
    summary = {**provenance(), "seconds": round(seconds, 1),
               "selection": args.selection, **found}
    write_json(args.out or OUT, summary)
    print(json.dumps(summary))


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
