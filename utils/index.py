"""Search with the learned codes: encode images with a trained model, index their codes, and
look up the top k by Hamming distance or every item within a radius.

    python -m utils.index build --model runs/x --images photos/ --out photos.index
    python -m utils.index search --index photos.index --query me.jpg --topk 10 --show me.png
    python -m utils.index info --index photos.index

The model is a MAH run folder (its checkpoint's target head: sign of the network's output)
or a train_mmhh.py snapshot. `build --from-run` exports a MAH run's learned database codes
V as they are, the codes the paper's asymmetric retrieval searches.

The index folder holds `codes.npy` (the codes packed 8 bits to a byte, K/8 bytes an item,
lengths padded to a multiple of 8 with zero bits, which add no distance), `items.json`
(item names: image paths, or rows of a data set's array), `labels.npy` where labels are
known, `manifest.json` (bits, model and its sha256, preprocessing, commit, date) and
`index.faiss`, the radius-search structure:
- up to 16 padded bits, FAISS's IndexBinaryHash over all the bits: a lookup of every code
  within r flips of the query's, which misses nothing;
- above, IndexBinaryMultiHash (multi-index hashing, Norouzi et al. 2012): m substrings that
  cover every bit, looked up with floor(r / m) flips each. Two codes within distance r
  differ in at most floor(r / m) bits of at least one substring (pigeonhole), so no item
  within the radius is missed, and every candidate's distance is checked.
Top k is exact: FAISS's flat scan gives the k-th distance d, every item within d is then
collected and ranked by (distance, item id), the order the project's metrics use (FAISS
breaks ties its own way). FAISS's range search keeps distances < radius, so radius r is
asked as r + 1.
"""
import datetime
import json
import math
import os
import sys

import faiss
import numpy as np
import torch
from tqdm import tqdm

from utils import mah, mmhh, options
from utils.atomic import atomic_write
from utils.data.cifar10 import IMAGE_SUFFIXES
from utils.data.feeder import Feeder
from utils.data.images import file_transform, open_rgb
from utils.data.labels import item_names
from utils.data.listfiles import read_lines
from utils.data.loader import load_data
from utils.errors import UserError, run
from utils.mah.encoder import MAHEncoder
from utils.report.figures import draw_retrieval, image_reader
from utils.runs import choose_device, git_commit, make_folder, read_json

FORMAT = 1
HASH_BITS = 16  # up to this many padded bits, one hash table over all of them
SUBSTRING_BITS = 16  # above, substrings of at most this many bits


# ------------------------------------------------------------------------- models

def load_encoder(path, device):
    """The Encoder (utils.models) of a MAH run folder or a train_mmhh.py snapshot (with or
    without .pt): each method says how its model makes codes."""
    return (mah if os.path.isdir(path) else mmhh).load_encoder(path, device)


def transform_of(preprocessing):
    p = preprocessing
    return file_transform(p["mean"], p["std"], p["resize"], p["crop"], square=p["square"])


# ------------------------------------------------------------------------- images

def image_files(source):
    """(names, paths, labels or None) of the images a source names: a folder tree (every image
    file below it, in sorted path order, named by its path under the folder), a HashNet-style
    list file (`path l1 ... lC` or `path c`) or a list of one image path a line."""
    if os.path.isdir(source):
        paths = sorted(os.path.join(top, f) for top, _, files in os.walk(source) for f in files
                       if f.lower().endswith(IMAGE_SUFFIXES))
        if not paths:
            raise UserError(f"--images {source} holds no image files ({', '.join(IMAGE_SUFFIXES)}); check the folder")
        return [os.path.relpath(p, source) for p in paths], paths, None
    if not os.path.isfile(source):
        raise UserError(f"--images {source} is neither a folder of images nor a list file; check the path")
    lines = read_lines(source)
    root = os.path.dirname(os.path.abspath(source))
    labelled = all(len(line.split()) > 1 for _, line in lines)
    names = [line.split()[0] if labelled else line for _, line in lines]
    paths = [n if os.path.isabs(n) else os.path.join(root, n) for n in names]
    labels = None
    if labelled:
        rows = [[int(t) for t in line.split()[1:]] if all(t.isdigit() for t in line.split()[1:]) else None
                for _, line in lines]
        labels = np.array(rows) if all(r is not None for r in rows) and len({len(r) for r in rows}) == 1 else None
    return names, paths, labels


def read_image(path, transform, where):
    try:
        return transform(open_rgb(path))
    except Exception as e:  # PIL raises OSError and, for some broken files, other errors
        raise UserError(f"{where}: image {path} cannot be read ({type(e).__name__}); replace it or leave it out") \
            from None


class _Files(torch.utils.data.Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return read_image(self.paths[i], self.transform, f"image {i}")


def encode_files(encoder, paths, batch_size, workers, progress=True):
    """N x K codes of image files, in batches, with a progress bar."""
    loader = torch.utils.data.DataLoader(_Files(paths, transform_of(encoder.preprocessing)), batch_size=batch_size,
                                         num_workers=workers)
    out = [encoder.codes(x) for x in tqdm(loader, desc="encoding", unit="batch", disable=None if progress else True,
                                          file=sys.stderr)]
    return torch.cat(out) if out else torch.zeros(0, encoder.bits)


def encode_part(encoder, data, part, batch_size):
    """N x K codes of a data set part, through the data layer's own preprocessing."""
    p = encoder.preprocessing
    feeder = Feeder(data, part, encoder.device, False, p["resize"], p["crop"], workers=0, square=p["square"],
                    mean=p["mean"], std=p["std"])
    order = np.arange(len(feeder))
    out = [encoder.codes(x) for _, x in tqdm(feeder.batches(order, batch_size), desc="encoding", unit="batch",
                                             total=-(-len(order) // batch_size), disable=None, file=sys.stderr)]
    return torch.cat(out)


# ------------------------------------------------------------------------- codes and structures

def pack(codes):
    """N x K codes in {-1, +1} (or {0, 1}) -> N x ceil(K / 8) uint8, bit j of a code in byte j // 8;
    the padding bits are 0 for every item, so they add no distance."""
    bits = (np.asarray(codes) > 0).astype(np.uint8)
    return np.packbits(bits, axis=1, bitorder="little")


def structure(packed_bits):
    """The radius-search structure for codes of `packed_bits` (a multiple of 8), empty, and its
    description: IndexBinaryHash up to 16 bits, else IndexBinaryMultiHash with m substrings of
    packed_bits / m bits each, m the fewest for substrings of at most 16 bits."""
    if packed_bits <= HASH_BITS:
        return faiss.IndexBinaryHash(packed_bits, packed_bits), {"type": "IndexBinaryHash", "b": packed_bits}
    m = next(m for m in range(math.ceil(packed_bits / SUBSTRING_BITS), packed_bits + 1) if packed_bits % m == 0)
    return faiss.IndexBinaryMultiHash(packed_bits, m, packed_bits // m), \
        {"type": "IndexBinaryMultiHash", "substrings": m, "b": packed_bits // m}


def set_radius(index, described, radius):
    """Flips per lookup that find every item within `radius` (see the module's note)."""
    index.nflip = radius if described["type"] == "IndexBinaryHash" else radius // described["substrings"]


def within(index, described, packed_queries, radius):
    """For each query, (item ids, distances) of every item at distance <= radius, ranked by
    (distance, id)."""
    set_radius(index, described, radius)
    lims, D, I = index.range_search(packed_queries, radius + 1)  # FAISS keeps d < radius
    return [_ranked(I[lims[q]:lims[q + 1]], D[lims[q]:lims[q + 1]]) for q in range(len(packed_queries))]


def top_k(flat, packed_queries, k, chunk=100):
    """For each query, the k nearest (item ids, distances), ties by id: FAISS's flat scan gives
    the k-th distance t; where an item beyond the k-th lies at t too, FAISS's choice among the
    items at t is arbitrary, so every item within t is fetched and ranked by (distance, id).
    Those queries are fetched together per value of t (a few values: one batched scan each,
    `chunk` queries at a time to bound the answers held at once) rather than one scan apiece."""
    k = min(k, flat.ntotal)
    D, I = flat.search(packed_queries, min(k + 1, flat.ntotal))  # Q x (k+1), ascending distances
    cut = D[:, k - 1]  # Q, the k-th distance
    tied = D[:, k] == cut if D.shape[1] > k else np.zeros(len(D), bool)
    out = [None] * len(packed_queries)
    for q in np.flatnonzero(~tied):  # no tie across the cut: FAISS's k are the k
        out[q] = _ranked(I[q, :k], D[q, :k])
    for t in np.unique(cut[tied]):
        group = np.flatnonzero(tied & (cut == t))
        for start in range(0, len(group), chunk):
            qs = group[start:start + chunk]
            lims, Dr, Ir = flat.range_search(packed_queries[qs], int(t) + 1)  # distance < t + 1
            for j, q in enumerate(qs):
                ids, dist = _ranked(Ir[lims[j]:lims[j + 1]], Dr[lims[j]:lims[j + 1]])
                out[q] = (ids[:k], dist[:k])
    return out


def _ranked(ids, dist):
    order = np.lexsort((ids, dist))
    return ids[order].astype(np.int64), dist[order].astype(np.int64)


# ------------------------------------------------------------------------- index folders

class Index:
    """An index folder, read back: manifest, names, labels, packed codes, the structure."""

    FILES = ("manifest.json", "codes.npy", "items.json", "index.faiss")

    def __init__(self, folder):
        missing = [f for f in self.FILES if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            raise UserError(f"--index {folder} is not an index folder (no {', '.join(missing)}); build one with "
                            "python -m utils.index build")
        self.folder = folder
        self.manifest = read_json(os.path.join(folder, "manifest.json"), "index manifest",
                                  keys=("format", "bits", "packed_bits", "items", "structure"))
        try:
            self.packed = np.load(os.path.join(folder, "codes.npy"))
            with open(os.path.join(folder, "items.json"), encoding="utf-8") as f:
                self.names = json.load(f)
            self.structure = faiss.read_index_binary(os.path.join(folder, "index.faiss"))
        except (OSError, ValueError, RuntimeError) as e:
            raise UserError(f"--index {folder} is corrupt ({type(e).__name__}); build it again") from None
        labels = os.path.join(folder, "labels.npy")
        self.labels = np.load(labels) if os.path.exists(labels) else None
        n, width = self.manifest["items"], self.manifest["packed_bits"] // 8
        if self.packed.shape != (n, width) or len(self.names) != n or self.structure.ntotal != n:
            raise UserError(f"--index {folder} is corrupt: its files disagree on the number of items; build it again")

    def flat(self):
        flat = faiss.IndexBinaryFlat(self.manifest["packed_bits"])
        flat.add(self.packed)
        return flat


def write_index(out, codes, names, labels, manifest):
    """The index folder `out` (made here; a folder that exists is refused) from N x K codes."""
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise UserError(f"--out {out} exists and is not empty; give a new folder")
    make_folder(out, "--out")
    packed = pack(codes)
    index, described = structure(packed.shape[1] * 8)
    index.add(packed)
    manifest = {**manifest, "format": FORMAT, "bits": int(codes.shape[1]), "packed_bits": packed.shape[1] * 8,
                "items": len(names), "structure": described, "bytes_per_item": packed.shape[1]}
    atomic_write(os.path.join(out, "codes.npy"), lambda f: np.save(f, packed))
    atomic_write(os.path.join(out, "items.json"), lambda f: f.write(json.dumps(names)), mode="w")
    if labels is not None:
        atomic_write(os.path.join(out, "labels.npy"), lambda f: np.save(f, np.asarray(labels)))
    # FAISS writes by path: to a temporary beside the target, then renamed like every other file
    tmp = os.path.join(out, f"index.faiss.{os.getpid()}.tmp")
    faiss.write_index_binary(index, tmp)
    os.replace(tmp, os.path.join(out, "index.faiss"))
    atomic_write(os.path.join(out, "manifest.json"), lambda f: f.write(json.dumps(manifest, indent=1) + "\n"),
                 mode="w")
    return manifest


# ------------------------------------------------------------------------- commands

def build(args):
    device = choose_device(args.gpu)
    encoder = load_encoder(args.model, device)
    base = {"model": encoder.path, "model_file": encoder.file, "model_sha256": encoder.sha256,
            "model_kind": encoder.kind, "preprocessing": encoder.preprocessing, "commit": git_commit(),
            "date": datetime.date.today().isoformat()}
    if args.from_run:
        if not isinstance(encoder, MAHEncoder):
            raise UserError("--from-run exports a MAH run's database codes V; --model is a train_mmhh.py snapshot")
        a = encoder.args
        data = load_data(a["dataset"], a.get("data_root"), a.get("image_root"), a.get("path_prefix"),
                         a.get("protocol", "dpsh"), a.get("seed", 0), split_file=os.path.join(args.model, "split.json"),
                         missing=a.get("missing_images", "error"))
        codes, names = encoder.database_codes.numpy(), item_names(data, "database", a.get("data_root"))
        manifest = write_index(args.out, codes, names, data.database.labels,
                               {**base, "codes": "the run's database codes V (target head)", "source": "database",
                                "dataset": data.info.name, "data_root": a.get("data_root")})
    elif not os.path.exists(args.images) and ":" in args.images:  # DATASET:PART of the data layer
        dataset, part = args.images.split(":", 1)
        if part not in ("query", "database", "train"):
            raise UserError(f"--images {args.images}: the part must be query, database or train")
        data = load_data(dataset, args.data_root, seed=args.seed)
        codes = encode_part(encoder, data, part, args.batch_size).numpy()
        manifest = write_index(args.out, codes, item_names(data, part, args.data_root), getattr(data, part).labels,
                               {**base, "codes": "the network's", "source": args.images,
                                "dataset": data.info.name, "data_root": args.data_root and os.path.abspath(args.data_root)})
    else:
        names, paths, labels = image_files(args.images)
        codes = encode_files(encoder, paths, args.batch_size, args.workers).numpy()
        root = args.images if os.path.isdir(args.images) else os.path.dirname(args.images)
        manifest = write_index(args.out, codes, names, labels,
                               {**base, "codes": "the network's", "source": os.path.abspath(args.images),
                                "image_root": os.path.abspath(root)})
    print(f"wrote {args.out}: {manifest['items']} items, {manifest['bits']} bits, {manifest['structure']['type']}")
    return manifest


def check_picture(path, queries):
    """--show writes a new PNG: never over a file that exists (a query image among them)."""
    if not path.lower().endswith(".png"):
        raise UserError(f"--show {path}: the picture is a PNG; give a file name ending in .png")
    if os.path.exists(path):
        taken = "a query image" if any(os.path.abspath(path) == os.path.abspath(q) for q in queries) else "a file"
        raise UserError(f"--show {path} is {taken} that exists; give a new file name")


def search(args):
    index = Index(args.index)
    m = index.manifest
    if args.show:  # before any work, so that a bad name costs nothing
        check_picture(args.show, args.query or [])
    if args.query:
        encoder = load_encoder(m["model"], choose_device(args.gpu))
        if encoder.bits != m["bits"]:
            raise UserError(f"the model {m['model']} makes {encoder.bits}-bit codes, the index holds {m['bits']}-bit "
                            "ones; search with the model the index was built with")
        if encoder.sha256 != m["model_sha256"]:
            print(f"notice: {encoder.file} changed since the index was built (sha256 differs)", file=sys.stderr)
        transform = transform_of(m["preprocessing"])
        x = torch.stack([read_image(p, transform, "--query") for p in args.query])
        packed, queries = pack(encoder.codes(x).numpy()), list(args.query)
    else:
        bad = [i for i in args.item if not 0 <= i < m["items"]]
        if bad:
            raise UserError(f"--item {bad[0]}: the index holds items 0 to {m['items'] - 1}")
        packed, queries = index.packed[args.item], list(args.item)
    if args.radius is not None:
        # every item is within K of a K-bit query: a larger radius asks for no more (and FAISS's
        # lookup would enumerate flips without end)
        found = within(index.structure, m["structure"], packed, min(args.radius, m["bits"]))
        if args.topk:
            found = [(i[:args.topk], d[:args.topk]) for i, d in found]
    else:
        found = top_k(index.flat(), packed, args.topk or 10)
    for query, (ids, dist) in zip(queries, found):
        for rank, (i, d) in enumerate(zip(ids.tolist(), dist.tolist()), 1):
            print(json.dumps({"query": query, "rank": rank, "item": i, "path": index.names[i], "distance": d}))
    if args.show:
        show(args.show, index, queries, found, args)
    return found


def show(path, index, queries, found, args):
    """The report's retrieval picture: each query, then its first 10 results, framed green or
    red by whether they share a label with it (item queries of a labelled index), else grey."""
    m = index.manifest
    examples = []
    for query, (ids, dist) in zip(queries, found):
        ids, dist = ids[:10], dist[:10]
        relevant = [None] * len(ids)
        if index.labels is not None and isinstance(query, int):
            ql, dl = np.asarray(index.labels[query]), np.asarray(index.labels[ids])
            relevant = (dl == ql if dl.ndim == 1 else (dl @ ql) > 0).tolist()
        examples.append({"query": index.names[query] if isinstance(query, int) else os.path.abspath(query),
                         "top": [index.names[i] for i in ids.tolist()], "distance": dist.tolist(),
                         "relevant": relevant, "tied": len(ids)})
    if m.get("dataset"):  # items named as the data layer names them (array rows, paths under the data root)
        if not (args.image_root or m.get("data_root")) and m["dataset"] != "digits":
            raise UserError(f"--show: the index's items are {m['dataset']} items; give --image-root, its data root")
        items = image_reader(m["dataset"], args.image_root or m["data_root"])
    else:
        items = image_reader("files", args.image_root or m["image_root"])

    def read(name):  # query images come by their own path
        return image_reader("files", "/")(name) if isinstance(name, str) and os.path.isabs(name) \
            else items(name)

    record = {"title": m["model_kind"], "retrieval": examples}
    draw_retrieval(path, record, read)
    print(f"wrote {path}", file=sys.stderr)


def info(args):
    index = Index(args.index)
    m = index.manifest
    size = sum(os.path.getsize(os.path.join(args.index, f)) for f in os.listdir(args.index))
    print(json.dumps({"index": args.index, "model": m.get("model"), "model_kind": m.get("model_kind"),
                      "bits": m["bits"], "items": m["items"], "bytes_per_item": m["packed_bits"] // 8,
                      "structure": m["structure"], "codes": m.get("codes"), "labels": index.labels is not None,
                      "size_on_disk": size, "commit": m.get("commit"), "date": m.get("date")}, indent=1))
    return m


def get_args_parser():
    p = options.Parser(prog="python -m utils.index", description="Encode images with a trained model, index the "
                                                                   "codes, search the index")
    sub = p.add_subparsers(dest="command", required=True, metavar="{build,search,info}")
    b = sub.add_parser("build", help="encode images (or export a MAH run's database codes) into an index folder")
    b.add_argument("--model", required=True, help="a MAH run folder or a train_mmhh.py snapshot (required)")
    b.add_argument("--images", help="a folder tree of images, a list file, or DATASET:PART of the data layer, e.g. "
                                    "cifar10:database with --data-root (default: none; needed without --from-run)")
    b.add_argument("--from-run", action="store_true", help="export the MAH run's learned database codes V, with the "
                                                           "database's item names and labels (default: off)")
    b.add_argument("--out", required=True, help="the index folder to write; must be new or empty (required)")
    b.add_argument("--data-root", help="where DATASET's data is, for --images DATASET:PART (default: none)")
    b.add_argument("--seed", type=options.seed, default=0, help="seed of DATASET's split (default: 0)")
    b.add_argument("--batch-size", type=options.positive_int, default=64, help="images per batch (default: 64)")
    b.add_argument("--workers", type=options.nonnegative_int, default=2, help="image-reading worker processes "
                                                                               "(default: 2)")
    b.add_argument("--gpu", default="0", help="CUDA device number, or 'cpu' (default: 0; the CPU without CUDA)")
    s = sub.add_parser("search", help="the top k or the Hamming ball of query images or items")
    s.add_argument("--index", required=True, help="an index folder written by build (required)")
    q = s.add_mutually_exclusive_group(required=True)
    q.add_argument("--query", nargs="+", help="query images, encoded with the index's model (default: none)")
    q.add_argument("--item", nargs="+", type=options.nonnegative_int, help="query with items of the index, by id "
                                                                           "(default: none)")
    s.add_argument("--topk", type=options.positive_int, help="the k nearest, ties by item id (default: 10 without "
                                                             "--radius; with it, all of the ball)")
    s.add_argument("--radius", type=options.nonnegative_int, help="every item at Hamming distance <= this, ranked by "
                                                                  "(distance, id) (default: none: top k)")
    s.add_argument("--show", help="also draw each query and its first 10 results into this new PNG file (default: "
                                  "none)")
    s.add_argument("--image-root", help="where the index's relative item paths start, for --show (default: the "
                                        "folder the index was built from)")
    s.add_argument("--gpu", default="0", help="CUDA device number, or 'cpu' (default: 0; the CPU without CUDA)")
    i = sub.add_parser("info", help="what an index holds")
    i.add_argument("--index", required=True, help="an index folder written by build (required)")
    return p


def main(args):
    if args.command == "build" and not args.from_run and not args.images:
        raise UserError("build needs --images (a folder, a list file or DATASET:PART), or --from-run")
    return {"build": build, "search": search, "info": info}[args.command](args)


if __name__ == "__main__":
    run(main, get_args_parser().parse_args())
