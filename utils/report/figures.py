"""The figures under fig/: MAH's mAP@5000 against code length beside the published curves,
precision against recall of the Hamming ball, MMHH under label noise, and the retrieval
pictures (also drawn by `python -m utils.index search --show`)."""
import os
import textwrap

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from utils.atomic import atomic_write
from utils.cache import unpacked
from utils.data.cifar10 import load_cifar10
from utils.data.images import open_rgb
from utils.errors import UserError
from utils.report.collect import protocol_cells
from utils.report.glance import headline
from utils.report.published import (COLOURS, FIGURES, LOSS_NAMES, MAH_METHODS, MAH_VARIANTS, MMHH_METHODS,
                                    PUBLISHED_MAP5000)
from utils.report.robustness import noise_curves
from utils.report.tables import name


def axes(ax, x, y):
    """Labels, a 0-1 scale, a light grid and, where something is drawn, the legend."""
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)


def draw_noise(path, dataset, records, settings):
    """MAP@H<=2 against the label-noise rate, one line per loss, bars from the lowest to the
    highest seed: under the default test and, beside it where the snapshots were tested so too,
    under --opt-test (the two can disagree: docs/protocols.md); the title names how the losses'
    `settings` were set. False (nothing drawn) without noise runs of `dataset`."""
    found = protocol_cells(records)
    keys = [k for k, cells in found.items() if k[0] == dataset and
            len({rate for (_, p, rate) in cells if p == "standard"}) > 1]
    if not keys:
        return False
    key = max(keys, key=lambda k: len(found[k]))
    panels = [("default test", noise_curves(found[key]))]
    opt_test = noise_curves(found[key], opt_test=True)
    if opt_test:  # the snapshots were tested under --opt-test too
        panels.append(("--opt-test", opt_test))
    fig = Figure(figsize=(6 * len(panels), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    for ax, (convention, curves) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        for m in (m for m in MMHH_METHODS if m in curves):
            rates = sorted(curves[m])
            mean = np.array([np.mean(curves[m][p]) for p in rates])
            low, high = mean - [min(curves[m][p]) for p in rates], [max(curves[m][p]) for p in rates] - mean
            ax.errorbar(rates, mean, yerr=[low, high], fmt="-o", capsize=3, label=LOSS_NAMES[m])
        axes(ax, "label-noise rate", f"MAP@H<=2 ({convention})")
    fig.suptitle(f"{name(dataset)}, {key[4]} bits, preset {key[1]}, {key[2]}, {settings}\nmean over seeds, bars from "
                 "the lowest to the highest", fontsize=8)
    return finish(fig, path)


CURVE_BITS = (4, 12)  # the lengths whose runs evaluate every 5 outer iterations (docs/claims.md, (e))


def curves_of(cells, method, bits):
    """{seed: {outer iteration: tie-aware MAP}} of the runs of one cell that kept a learning curve."""
    return {seed: {p["iteration"]: p["map_tie_aware"] for p in r["curve"]}
            for seed, r in cells.get((method, bits), {}).items() if r.get("curve")}


def draw_curves(path, dataset, series):
    """Tie-aware MAP against outer iteration at 4 and 12 bits, as docs/claims.md declares for
    (e): each seed's curve as a thin line, and per method a thick line, the mean over the seeds
    that kept a curve at the iterations all of them evaluated; False (nothing drawn) when no
    run kept one."""
    cells = series[headline(series, dataset)]
    if not any(curves_of(cells, m, b) for m in MAH_METHODS for b in CURVE_BITS):
        return False
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    for ax, b in zip(fig.subplots(1, 2), CURVE_BITS):
        for m in MAH_METHODS:
            by_seed = curves_of(cells, m, b)
            if not by_seed:
                continue
            its = sorted(set.intersection(*(set(c) for c in by_seed.values())))
            v = np.array([[c[t] for t in its] for c in by_seed.values()])  # seeds x iterations
            for c in by_seed.values():
                ax.plot(*zip(*sorted(c.items())), "-", linewidth=0.8, alpha=0.4, color=COLOURS[m])
            ax.plot(its, v.mean(0), "-o", linewidth=2, markersize=3, color=COLOURS[m],
                    label=f"{m}, mean of {len(by_seed)} seed{'s' * (len(by_seed) != 1)}")
        ax.set_title(f"{b} bits", fontsize=10)
        axes(ax, "outer iteration", "tie-aware MAP")
    fig.suptitle(f"{name(dataset)}: tie-aware MAP during training, each seed (thin) and their mean (thick)",
                 fontsize=10)
    return finish(fig, path)


def draw(path, dataset, series):
    """MAH mAP@5000 (beside the published curves) and precision@5000 against code length: the
    mean over the seeds of the headline series, bars from the lowest to the highest seed."""
    key = headline(series, dataset)
    _, preset, backbone, device = key
    cells = series[key]
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)  # render off-screen, without pyplot's global state or a display
    left, right = fig.subplots(1, 2)
    ticks, seeds = set(), set()
    for m in MAH_METHODS:
        bits = sorted(b for method, b in cells if method == m)
        for ax, metric in ((left, "map_at_5000"), (right, "precision_at_5000")):
            if not bits:
                continue
            values = [[r["metrics"][metric] for r in cells[m, b].values()] for b in bits]
            mean = np.array([np.mean(v) for v in values])
            low, high = mean - [min(v) for v in values], [max(v) for v in values] - mean
            ax.errorbar(bits, mean, yerr=[low, high], fmt="-o", capsize=3, color=COLOURS[m], label=f"{m} (ours)")
        seeds |= {seed for b in bits for seed in cells[m, b]}
        published = PUBLISHED_MAP5000.get((dataset, m), {})
        if published:
            left.plot(sorted(published), [published[b] for b in sorted(published)], "--", color=COLOURS[m],
                      label=f"{m} published (approx.)")
        ticks |= set(bits) | set(published)
    left.set_title("mAP@5000 (the paper's \"Precision@5K\")", fontsize=10)
    right.set_title("precision@5000 (ours only)", fontsize=10)
    for ax in (left, right):
        ax.set_xticks(sorted(ticks))
        ax.set_ylim(0, 1)
        ax.set_xlabel("code length (bits)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{name(dataset)}, MAH: preset {preset}, backbone {backbone}, device {device}; mean over seeds "
                 f"{', '.join(map(str, sorted(seeds)))}, bars from the lowest to the highest", fontsize=10)
    fig.tight_layout()
    save(fig, path)


def draw_pr(path, dataset, series):
    """Precision against recall of the Hamming ball (radius 0 to K), one curve per code length,
    a panel per method: the mean over the seeds of the headline series that recorded it.
    Returns False (and draws nothing) when none did."""
    key = headline(series, dataset)
    cells = series[key]
    curves = {cell: [r["metrics"]["pr_by_radius"] for r in by_seed.values() if "pr_by_radius" in r["metrics"]]
              for cell, by_seed in cells.items()}
    curves = {cell: c for cell, c in curves.items() if c}
    if not curves:
        return False
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    for ax, m in zip(fig.subplots(1, 2), MAH_VARIANTS):
        lengths = sorted(b for method, b in curves if method == m)
        for b in lengths:
            precision = np.mean([c["precision"] for c in curves[m, b]], axis=0)
            recall = np.mean([c["recall"] for c in curves[m, b]], axis=0)
            n = len(curves[m, b])
            ax.plot(recall, precision, "-o", markersize=3, label=f"{b} bits ({n} seed{'s' * (n != 1)})")
        ax.set_title(m, fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(alpha=0.3)
        if lengths:
            ax.legend(fontsize=8)
    fig.suptitle(f"{name(dataset)}, MAH, preset {key[1]}, backbone {key[2]}, device {key[3]}\nprecision and recall of "
                 "the Hamming ball of radius 0, 1, ..., K (an empty ball counts precision 0), mean over the seeds that "
                 "recorded it", fontsize=9)
    return finish(fig, path)


def finish(fig, path):
    """Lay the figure out and save it; True (it was drawn)."""
    fig.tight_layout()
    save(fig, path)
    return True


def save(fig, path):
    # no Software entry: the PNG then holds nothing that changes between matplotlib versions or runs
    atomic_write(path, lambda f: fig.savefig(f, format="png", metadata={"Software": None}))


def data_roots(pairs):
    """--data DATASET=ROOT options as {dataset: root}."""
    roots = {}
    for pair in pairs:
        dataset, sep, root = pair.partition("=")
        if not sep or dataset not in FIGURES or not root:
            raise UserError(f"--data {pair!r}: expected DATASET=ROOT with DATASET one of {', '.join(FIGURES)}")
        roots[dataset] = root
    return roots


def shown_record(runs):
    """The record whose retrieval examples are drawn: the longest MAH-cascade code with
    examples, else the longest of any method (of one length, the last method by name)."""
    have = [(m == "MAH-cascade", b, m) for (m, b), r in runs.items() if r.get("retrieval")]
    return runs[max(have)[2], max(have)[1]] if have else None


def image_reader(dataset, root):
    """name -> H x W x 3 uint8 image, for the item names of utils.retrieval: rows of the
    CIFAR-10 or digits array, else image paths under `root` (a folder or an archive)."""
    if dataset == "cifar10":
        images = load_cifar10(root).images
        return lambda row: images[row]
    if dataset == "digits":
        from utils.data.loader import load_digits

        images = load_digits()[0]
        return lambda row: images[row]
    folder = unpacked(root)

    def read(path):
        try:
            return np.asarray(open_rgb(os.path.join(folder, path)))
        except OSError as e:
            raise UserError(f"{os.path.join(folder, path)}: cannot read this image ({e}); is --data "
                            f"{dataset}={root} the data its runs read?") from e
    return read


def draw_retrieval(path, record, read):
    """One row per query: the query, then its top database items framed green when relevant
    and red when not, each with its Hamming distance."""
    shown = record["retrieval"]
    top = max(len(e["top"]) for e in shown)
    fig = Figure(figsize=(1.1 * (top + 1), 1.25 * len(shown) + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(shown), top + 1, squeeze=False)
    for row, example in zip(axes, shown):
        cells = [(example["query"], "black", "query")] + [
            (item, {True: "tab:green", False: "tab:red", None: "tab:gray"}[rel], f"d={d}")
            for item, rel, d in zip(example["top"], example["relevant"], example["distance"])]
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
        for ax, (item, colour, label) in zip(row, cells):
            ax.imshow(read(item))
            ax.set_frame_on(True)
            for spine in ax.spines.values():
                spine.set_color(colour)
                spine.set_linewidth(3)
            ax.set_title(label, fontsize=7, pad=2)
        if example["distance"]:
            row[0].set_ylabel(f"{example['tied']} items\nwithin d={example['distance'][-1]}", fontsize=7)
    about = record.get("title") or (f"{name(record['dataset'])}, {record['method']} {record['bits']} bits "
                                    f"({record['preset']}, seed {record['seed']})")
    # the frame colours say something only where the examples carry relevance (labels)
    legend = "; green relevant, red not" if any(r is not None for e in shown for r in e["relevant"]) else ""
    fit_width(fig, fig.suptitle(f"{about}: top {top} by Hamming distance, ties in database order{legend}",
                                fontsize=8))
    fig.tight_layout()
    save(fig, path)


def fit_width(fig, text):
    """Wrap a title onto more lines until it fits the figure's width (a few results make a narrow one)."""
    renderer, words = fig.canvas.get_renderer(), text.get_text()
    chars = len(words)
    while text.get_window_extent(renderer).width > 0.96 * fig.bbox.width and chars > 10:
        chars = chars * 4 // 5
        text.set_text(textwrap.fill(words, chars))
