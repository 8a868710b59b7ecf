"""Result tables and figures from the results files of the training scripts.

`python -m utils.report` reads every results/**/*.json (MAH and MMHH records, in sorted
path order) and rewrites, between marker comments:
- README.md, "results at a glance": the claims table (every claim's paired difference over
  seeds and its verdict) and the first data set's headline MAH table (preset cpu-pretrained,
  beside the published values, every cell the mean and half-range over its seeds);
- README.md, "your own images": one sentence of the seconds bench/own_images.py measured, and
  "search with the codes": one sentence of search's speed-ups bench/bench_index.py measured,
  with all its cases in a table of docs/index.md; each when its summary in bench/out/ is
  there (else the text stays);
- docs/results.md: every data set's headline tables (MAH and MMHH, with the MMHH-minus-
  HashNet-loss difference and the seeds in which MMHH is ahead), every group of runs (data
  set, preset, backbone, device, seed) in full, and the tables over seeds;
- docs/claims.md: every claims row with its cells, the MMHH tuning grid's validation scores
  with each loss's choice by the declared rule, and the final runs over seeds; under the grid
  and the final runs' tables, the commands behind them;
- docs/testing.md: one sentence of the suite's time bench/bench_suite.py measured, and
  docs/metrics.md and docs/data.md: the tables of bench/bench_metrics.py and
  bench/bench_data.py (CPU, and CUDA where they ran there), docs/metrics.md's sentence of
  bench/bench_threading.py and docs/distributed.md's of bench/bench_distributed.py; each when
  its summary is there (else the text stays).
It draws fig/<DATASET>.png (MAH mAP@5000 against code length beside the published curves,
the original's "Precision@5K" being mAP@5000, and true precision@5000; mean and range over
the seeds of the headline runs), fig/<DATASET>_pr.png (precision against recall of the
Hamming ball, radius 0 to K, of the headline runs that recorded it), fig/<DATASET>_curves.png
(MAH's learning curves), fig/<DATASET>_noise.png and fig/<DATASET>_noise_tuned.png (MMHH-family
MAP@H<=2 against the label-noise rate: the runs of settings fixed before any tuning, and the
final runs of the settings the tuning chose) and, with --data
DATASET=ROOT, fig/<DATASET>_retrieval.png (the retrieval examples a run kept, with the
images read from ROOT). MAH tables lead with the tie-aware MAP, which does not depend on
the database order. Nothing depends on the clock, so a rerun on the same results leaves
every file byte-identical.
"""
import argparse
import os
import sys

from utils.atomic import atomic_write
from utils.errors import UserError
from utils.report import failures
from utils.report.claims import claims_section
from utils.report.finals import finals_section
from utils.report.collect import load_records, series_of, setting
from utils.report.figures import (data_roots, draw, draw_curves, draw_noise, draw_pr, draw_retrieval, image_reader,
                                   shown_record)
from utils.report.glance import glance_section, headline, headline_section
from utils.report.benches import (BENCH_DATA, BENCH_DATA_CUDA, BENCH_DISTRIBUTED, BENCH_INDEX, BENCH_METRICS,
                                  BENCH_METRICS_CUDA, BENCH_SUITE, BENCH_THREADING, MUTATION_CHECK, OWN_IMAGES,
                                  data_tables, distributed_sentence, index_figures, metrics_tables, mutation_block,
                                  own_images_sentence, suite_sentence, summary_path, threading_sentence)
from utils.report.published import FIGURES, PR_FIGURES, RETRIEVAL_FIGURES
from utils.report.robustness import protocols_section
from utils.report.tables import mah_section, mmhh_section
from utils.report.tuning import tuning_section

# the benches' summaries the text is written from: (option, bench, file in bench/out/, the text)
SUMMARIES = (("--own-images", "bench/own_images.py", OWN_IMAGES, "the README's sentence on your own images"),
             ("--bench-index", "bench/bench_index.py", BENCH_INDEX,
              "the README's sentence on search and the table of --index-page"),
             ("--bench-suite", "bench/bench_suite.py", BENCH_SUITE, "the suite's time in --testing-page"),
             ("--bench-metrics", "bench/bench_metrics.py", BENCH_METRICS, "the tables of --metrics-page"),
             ("--bench-metrics-cuda", "bench/bench_metrics.py --device cuda", BENCH_METRICS_CUDA,
              "the GPU's tables of --metrics-page, after the CPU's"),
             ("--bench-data", "bench/bench_data.py", BENCH_DATA, "the input-pipeline table of --data-page"),
             ("--bench-data-cuda", "bench/bench_data.py --device cuda", BENCH_DATA_CUDA,
              "the GPU's input-pipeline table of --data-page, after the CPU's"),
             ("--bench-threading", "bench/bench_threading.py", BENCH_THREADING,
              "the sentence on numba's thread pools in --metrics-page"),
             ("--bench-distributed", "bench/bench_distributed.py", BENCH_DISTRIBUTED,
              "the sentence of --distributed-page"),
             ("--bench-mutation", "bench/mutation_check.py", MUTATION_CHECK,
              "the mutation check's outcome in --testing-page"))
# what a page of docs/ holds from the benches: (its --PAGE-page option's PAGE, the section's
# marker, the summaries' options, what writes the section from the summaries found)
BENCH_TEXT = (("testing", "suite", ("--bench-suite",), suite_sentence),
              ("metrics", "metrics-bench", ("--bench-metrics", "--bench-metrics-cuda"), metrics_tables),
              ("data", "data-bench", ("--bench-data", "--bench-data-cuda"), data_tables),
              ("metrics", "threading", ("--bench-threading",), threading_sentence),
              ("distributed", "distributed-bench", ("--bench-distributed",), distributed_sentence),
              ("testing", "mutation-check", ("--bench-mutation",), mutation_block))
# the pages of docs/ beside --details with sections the report writes: (option, file, the sections)
PAGES = (("--claims", "claims.md", "the claims, the tuning grid and the final runs"),
         ("--index-page", "index.md", "the search benchmark table"),
         ("--testing-page", "testing.md", "the sentence on the suite's time and the mutation check's outcome"),
         ("--metrics-page", "metrics.md", "the metrics benchmark tables and the thread-pool sentence"),
         ("--data-page", "data.md", "the input-pipeline table"),
         ("--distributed-page", "distributed.md", "the sentence on one process against several"))


def get_args_parser():
    p = argparse.ArgumentParser(description="Rewrite the result tables of the README and docs/results.md and draw "
                                            "fig/*.png from the results JSON files")
    p.add_argument("--results", default="results", help="folder searched recursively for results *.json "
                                                        "(default: results)")
    p.add_argument("--readme", default="README.md", help="README whose results-at-a-glance section is rewritten "
                                                         "(default: README.md)")
    p.add_argument("--details", default=os.path.join("docs", "results.md"),
                   help="page whose full MAH and MMHH result sections are rewritten (default: docs/results.md)")
    for option, script, file, what in SUMMARIES:
        p.add_argument(option, help=f"summary of python {script}, for {what} (default: bench/out/{file} beside "
                                    "--readme, when it is there; without it that text stays as it is)")
    for option, file, what in PAGES:
        p.add_argument(option, help=f"page that holds {what} (default: {file} beside --details, when it is there)")
    p.add_argument("--fig", default="fig", help="folder of the figures (default: fig)")
    p.add_argument("--data", action="append", default=[], metavar="DATASET=ROOT",
                   help="where a data set's images are (the --data-root its runs read), to draw "
                        "fig/<DATASET>_retrieval.png; repeatable (default: none, no retrieval pictures)")
    return p


def replace_section(text, kind, body, readme):
    """`text` with what lies between the start and end marker of `kind` replaced by `body`."""
    start, end = f"<!-- results-{kind}:start -->", f"<!-- results-{kind}:end -->"
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if j < 0:
        missing = start if i < 0 else f"{end} after {start}"
        raise UserError(f"{readme} has no marker {missing}: add the pair {start} and {end}, each on its own line, "
                        f"where the {kind.upper()} results go")
    return text[:i + len(start)] + "\n" + body + "\n" + text[j:]


def read_text(path, option):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is missing or not UTF-8 text ({type(e).__name__}); give {option} PATH") from e


def named_or_present(named, default):
    """The file an option named, else `default` when it is there; None: what it would write or be
    written from stays as it is (a bench's summary, a page beside --details)."""
    return named or (default if os.path.exists(default) else None)


def bench_summary(named, readme, name):
    """The summary a bench's text is written from: the one named, else bench/out/<name> beside the README."""
    return named_or_present(named, summary_path(readme, name))


def beside_details(named, details, name):
    """The page an option named, else <name> beside --details."""
    return named_or_present(named, os.path.join(os.path.dirname(details), name))


def main(args):
    def bench(option):
        """The summary of a bench's --bench-... option (see bench_summary), or None."""
        default = next(file for o, _, file, _ in SUMMARIES if o == option)
        return bench_summary(getattr(args, option[2:].replace("-", "_")), args.readme, default)

    roots = data_roots(args.data)
    records = load_records(args.results)
    # every page's markers are checked before anything is written
    pages = {}  # path -> its new text, in the order written

    def rewrite(path, option, kind, body):
        pages[path] = replace_section(pages[path] if path in pages else read_text(path, option), kind, body, path)

    rewrite(args.readme, "--readme", "glance", glance_section(records))
    own = bench("--own-images")
    if own:
        rewrite(args.readme, "--readme", "own", own_images_sentence(own))
    search = bench("--bench-index")
    if search:
        sentence, search_table = index_figures(search)
        rewrite(args.readme, "--readme", "index", sentence)
    rewrite(args.details, "--details", "headline", headline_section(records))
    rewrite(args.details, "--details", "mah", mah_section(records["mah"]))
    rewrite(args.details, "--details", "mmhh", mmhh_section(records["mmhh"]))
    rewrite(args.details, "--details", "protocols", protocols_section(records["mmhh"] + records["protocols"]))
    claims = beside_details(args.claims, args.details, "claims.md")
    if claims:
        rewrite(claims, "--claims", "claims", claims_section(records))
        rewrite(claims, "--claims", "tuning",
                tuning_section(records["validation"], failures.failed(records["failed"], "tuning")))
        rewrite(claims, "--claims", "finals", finals_section(records))
    index_page = beside_details(args.index_page, args.details, "index.md")
    if search and index_page:
        rewrite(index_page, "--index-page", "index-bench", search_table)
    for page, kind, options, write in BENCH_TEXT:
        found = [p for p in map(bench, options) if p]
        path = beside_details(getattr(args, f"{page}_page"), args.details, f"{page}.md")
        if found and path:
            rewrite(path, f"--{page}-page", kind, write(*found))
    written = []
    for path, text in pages.items():
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        print(f"wrote {path}")
        written.append(path)
    series = series_of(records["mah"])
    for dataset, file in FIGURES.items():
        if not headline(series, dataset):
            continue
        os.makedirs(args.fig, exist_ok=True)
        path = os.path.join(args.fig, file)
        draw(path, dataset, series)
        print(f"wrote {path}")
        written.append(path)
        path = os.path.join(args.fig, PR_FIGURES[dataset])
        if draw_pr(path, dataset, series):  # only runs that recorded the curve
            print(f"wrote {path}")
            written.append(path)
        path = os.path.join(args.fig, file.replace(".png", "_curves.png"))
        if draw_curves(path, dataset, series):  # only runs that kept their learning curve
            print(f"wrote {path}")
            written.append(path)
    # the runs of settings fixed before any tuning, and the final runs of the chosen ones, apart
    noise_figures = (("_noise.png", records["mmhh"] + records["protocols"], "settings fixed before any tuning"),
                     ("_noise_tuned.png", records["tuned"], "settings chosen on the validation split"))
    for dataset, file in FIGURES.items():
        for suffix, runs, settings in noise_figures:
            path = os.path.join(args.fig, file.replace(".png", suffix))
            if any(r["dataset"] == dataset and setting(r)[1] for r in runs):
                os.makedirs(args.fig, exist_ok=True)
                if draw_noise(path, dataset, runs, settings):
                    print(f"wrote {path}")
                    written.append(path)
    for dataset, root in roots.items():
        # the lowest seed of each cell; of the series whose runs kept examples, the headline one
        first = {k: {cell: by_seed[min(by_seed)] for cell, by_seed in cells.items()} for k, cells in series.items()}
        key = headline({k: cells for k, cells in series.items() if shown_record(first[k])}, dataset)
        record = shown_record(first[key]) if key else None
        if record is None:
            print(f"note: no {dataset} result with retrieval examples; no retrieval picture", file=sys.stderr)
            continue
        os.makedirs(args.fig, exist_ok=True)
        path = os.path.join(args.fig, RETRIEVAL_FIGURES[dataset])
        draw_retrieval(path, record, image_reader(dataset, root))
        print(f"wrote {path}")
        written.append(path)
    return written
