"""Examples of retrieval for the results file and the picture the report draws from them,
the precision-recall curve of the Hamming ball that the report plots, what the balls
hold (a collapse into one ball, or empty balls), and the warning both methods print after
their final evaluation when the database codes collapsed.

A run keeps, for the first few queries of its (seeded) query order, the ten database items
its codes rank first and whether each is relevant. Items are named so that the report can
find their images again without the run: CIFAR-10 rows of the archive in its canonical
order (utils.data.cifar10), list-file images by their path under the data root.
"""
import sys

import numpy as np
import torch

from utils import metrics
from utils.metrics import hamming_distance

QUERIES, TOP = 5, 10


def examples(query_codes, db_codes, query_labels, db_labels, query_names, db_names, queries=QUERIES, top=TOP):
    """For the first `queries` queries: the `top` database items nearest in Hamming distance,
    ties broken by database order, as {"query", "top", "distance", "relevant", "tied"}, where
    "tied" counts the database items at most as far as the last one shown (how arbitrary the
    choice among equals is: at 4 bits thousands share a distance)."""
    dist = hamming_distance(query_codes[:queries], db_codes)  # Q x n
    ql, dl = np.asarray(query_labels[:queries]), np.asarray(db_labels)
    if dl.ndim == 1:  # class ids: relevant = same class
        relevant = ql[:, None] == dl[None, :]  # Q x n
    else:  # multi-hot: relevant = at least one label shared
        relevant = (ql.astype(np.float32) @ dl.astype(np.float32).T) > 0  # Q x n
    out = []
    for d, rel, name in zip(dist, relevant, query_names):
        order = np.argsort(d, kind="stable")[:top]  # stable: ties in database order
        out.append({"query": name, "top": [db_names[j] for j in order], "distance": d[order].tolist(),
                    "relevant": rel[order].tolist(), "tied": int((d <= d[order[-1]]).sum())})
    return out


def ball_statistics(q, d, radius):
    """What the Hamming balls d <= radius of the queries hold, for a results file: the share
    of queries whose ball is empty, the median items per ball, and the mean share of the
    database per ball (1.0: every code in one ball, a collapse)."""
    sizes = metrics.ball_sizes(q, d, radius)  # Q
    return {"radius": radius, "empty_ball_share": float(np.mean(sizes == 0)),
            "ball_items_median": float(np.median(sizes)), "ball_database_share": float(sizes.mean() / len(d))}


def pr_curve(q, d, ql, dl):
    """Mean precision and recall of the Hamming ball d <= r for r = 0..K (metrics'
    precision_recall_by_radius), as lists for a results file."""
    precision, recall = metrics.precision_recall_by_radius(q, d, ql, dl)
    return {"precision": precision.tolist(), "recall": recall.tolist()}


def warn_if_collapsed(db_codes, db_labels, classes):
    """Print one warning line when the n x K database codes take fewer distinct values than they
    need to separate what the labels tell apart: the classes, or fewer where the database has
    fewer distinct label rows or K bits fewer codes; returns the count of distinct codes. The
    metrics still come out numbers then, so without the line a collapse is easy to miss."""
    codes = torch.as_tensor(db_codes)
    n, bits = codes.shape
    distinct = len(torch.unique(codes, dim=0))
    labels = np.asarray(db_labels)
    needed = {"classes": classes, "distinct label rows of the database": len(np.unique(labels, axis=0)),
              f"codes {bits} bits allow": 2 ** bits}
    basis = min(needed, key=needed.get)
    if n < 2 or distinct >= needed[basis]:
        return distinct
    if distinct == 1:
        held = f"all {n} database items have one code: the codes collapsed, and every query ties the whole database"
    else:
        held = (f"the {n} database items have only {distinct} distinct codes, fewer than the {needed[basis]} "
                f"{basis}: items the codes should separate share one, and the Hamming ranking ties them")
    print(f"warning: {held} (MAP falls towards the share of relevant items); the model may need more training or "
          "another --lr", file=sys.stderr)
    return distinct
