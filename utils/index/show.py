"""`search --show`: the report's retrieval picture of each query and its first 10 results."""
import os
import sys

import numpy as np

from utils.errors import UserError
from utils.index.structures import SCAN, within
from utils.report.figures import draw_retrieval, image_reader

SHOWN = 10


def show(path, index, queries, padded, found, args):
    """Each query, then its first 10 results, framed green or red by whether they share a label
    with it (item queries of a labelled index), else grey; beside each query, how many items of
    the whole index lie within the last distance shown."""
    m = index.manifest
    examples = []
    for query, code, (ids, dist) in zip(queries, padded, found):
        ids, dist = ids[:SHOWN], dist[:SHOWN]
        relevant = [None] * len(ids)
        if index.labels is not None and isinstance(query, int):
            ql, dl = np.asarray(index.labels[query]), np.asarray(index.labels[ids])
            relevant = (dl == ql if dl.ndim == 1 else (dl @ ql) > 0).tolist()
        tied = 0
        if len(dist):
            tied = len(within(index.flat, None, SCAN, code[None], int(dist[-1]))[0][0])  # every item within it
        examples.append({"query": index.names[query] if isinstance(query, int) else os.path.abspath(query),
                         "top": [index.names[i] for i in ids.tolist()], "distance": dist.tolist(),
                         "relevant": relevant, "tied": tied})
    if m.get("dataset"):  # items named as the data layer names them (array rows, paths under the data root)
        if not (args.image_root or m.get("data_root")) and m["dataset"] != "digits":
            raise UserError(f"--show: the index's items are {m['dataset']} items; give --image-root, its data root")
        items = image_reader(m["dataset"], args.image_root or m["data_root"])
    else:
        items = image_reader("files", args.image_root or m["image_root"])

    def read(name):  # query images come by their own path
        return image_reader("files", "/")(name) if isinstance(name, str) and os.path.isabs(name) \
            else items(name)

    draw_retrieval(path, {"title": m["model_kind"], "retrieval": examples}, read)
    print(f"wrote {path}", file=sys.stderr)
