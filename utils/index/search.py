"""`python -m utils.index search` and `info`."""
import json
import os
import sys

import torch

from utils.errors import UserError
from utils.index.encode import load_encoder, network_input, read_image, transform_of
from utils.index.folder import Index
from utils.index.show import show
from utils.index.structures import pack, top_k, within
from utils.runs import choose_device


def check_picture(path, queries):
    """--show writes a new PNG: never over a file that exists (a query image among them)."""
    if not path.lower().endswith(".png"):
        raise UserError(f"--show {path}: the picture is a PNG; give a file name ending in .png")
    if os.path.exists(path):
        taken = "a query image" if any(os.path.abspath(path) == os.path.abspath(q) for q in queries) else "a file"
        raise UserError(f"--show {path} is {taken} that exists; give a new file name")


def encode_queries(m, paths, gpu):
    """Packed codes of query images, encoded with the index's model."""
    if not os.path.isfile(m["model_file"]):
        raise UserError(f"--query: the index's model file {m['model_file']} is gone (moved or deleted); restore "
                        f"{m['model']} where it was, or build the index again with the model's new place")
    encoder = load_encoder(m["model"], choose_device(gpu))
    if encoder.bits != m["bits"]:
        raise UserError(f"the model {m['model']} makes {encoder.bits}-bit codes, the index holds {m['bits']}-bit "
                        "ones; search with the model the index was built with")
    if encoder.sha256 != m["model_sha256"]:
        print(f"notice: {encoder.file} changed since the index was built (sha256 differs)", file=sys.stderr)
    transform = transform_of(m["preprocessing"])
    x = torch.stack([read_image(p, transform, "--query") for p in paths])  # Q x 3 x S x S uint8
    return pack(encoder.codes(network_input(encoder)(x)).numpy())


def search(args):
    index = Index(args.index)
    m = index.manifest
    if args.show:  # before any work, so that a bad name costs nothing
        check_picture(args.show, args.query or [])
    if args.query:
        packed, queries = encode_queries(m, args.query, args.gpu), list(args.query)
    else:
        bad = [i for i in args.item if not 0 <= i < m["items"]]
        if bad:
            raise UserError(f"--item {bad[0]}: the index holds items 0 to {m['items'] - 1}")
        packed, queries = index.packed[args.item], list(args.item)
    padded = index.queries(packed)
    if args.radius is not None:
        # every item is within K of a K-bit query: a larger radius asks for no more (and FAISS's
        # lookup would enumerate flips without end)
        found = within(index.flat, index.structure, m["structure"], padded, min(args.radius, m["bits"]),
                       index.groups)
        if args.topk:
            found = [(i[:args.topk], d[:args.topk]) for i, d in found]
    else:
        found = top_k(index.scan, padded, args.topk or 10, index.groups)
    for query, (ids, dist) in zip(queries, found):
        for rank, (i, d) in enumerate(zip(ids.tolist(), dist.tolist()), 1):
            print(json.dumps({"query": query, "rank": rank, "item": i, "path": index.names[i], "distance": d}))
    if args.show:
        show(args.show, index, queries, padded, found, args)
    return found


def info(args):
    index = Index(args.index)
    m = index.manifest
    size = sum(os.path.getsize(os.path.join(args.index, f)) for f in os.listdir(args.index))
    print(json.dumps({"index": args.index, "model": m.get("model"), "model_kind": m.get("model_kind"),
                      "bits": m["bits"], "items": m["items"], "distinct_codes": m.get("distinct_codes"),
                      "bytes_per_item": m["packed_bits"] // 8, "bytes_per_item_searched": m["scan_bits"] // 8,
                      "structure": m["structure"], "searched_through": m["searched_through"], "codes": m.get("codes"),
                      "labels": index.labels is not None,
                      "size_on_disk": size, "commit": m.get("commit"), "date": m.get("date")}, indent=1))
    return m
