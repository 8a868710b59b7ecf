"""Radius search and top k through utils.index against an exact linear scan (FAISS's
IndexBinaryFlat), on the same codes and queries; and how fast `build` encodes images.

For each database size N, code length K and kind of codes (uniformly random, or clustered
like trained codes: 10 class prototypes with 15% bit noise, as bench/bench_metrics.py makes
them), 1,000 queries of the same kind:
- build: seconds, and the structure's size as stored (index.faiss), in bytes per item;
- radius r: the index's lookup against the flat scan's range search, `--rounds` calls of
  each after one untimed call, in turns (bench_metrics.interleaved), median seconds, and
  the other processes' load meanwhile; where the code width has no FAISS scan kernel (6 bytes
  for 48 bits), also the scan of the same codes padded to the next width that has one
  (8 bytes); the result sets must be identical (checked, said); items returned and codes
  compared per query, and the share of the index's time spent ranking and copying out the
  answers, since a lookup cannot be faster than writing out its answer;
- top 100 (`--topk`): utils.index.top_k (exact, ties by id) against the flat scan's search.
The peak resident memory of the process comes last.
Every line ends with the ratio of medians (scan / index: above 1, the index is faster).

    python bench/bench_index.py                                 # N = 1e5 and 1e6, K = 12, 48, 64
    python bench/bench_index.py --sizes 10000000 --bits 48 --radii 2 --rounds 3
    python bench/bench_index.py --encode RUN_FOLDER             # build's images/s against forward alone
"""
import argparse
import os
import resource
import statistics
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_metrics import interleaved, timed  # noqa: E402  (the timing every bench shares)
from utils import index as ix  # noqa: E402


def codes(kind, n, bits, rng, protos=None):
    """n x bits codes in {0, 1}: random, or around `protos` (10 class prototypes, drawn when
    not given) with 15% bit noise; returns the codes and the prototypes."""
    if kind == "random":
        return rng.random((n, bits)) < 0.5, None
    protos = rng.random((10, bits)) < 0.5 if protos is None else protos
    return protos[rng.integers(0, 10, n)] ^ (rng.random((n, bits)) < 0.15), protos


def same_sets(a, b):
    return all(np.array_equal(np.sort(x), np.sort(y)) for x, y in zip(a, b))


def scan_within(flat, queries, r):
    lims, _, I = flat.range_search(queries, r + 1)
    return [I[lims[q]:lims[q + 1]] for q in range(len(queries))]


def bench_codes(n, bits, kind, args, rng):
    import faiss

    database, protos = codes(kind, n, bits, rng)
    db, queries = ix.pack(database), ix.pack(codes(kind, args.queries, bits, rng, protos)[0])  # queries alike
    seconds, (structure, described) = timed(lambda: _built(db))
    stored = len(faiss.serialize_index_binary(structure))  # the structure as index.faiss holds it
    flat = faiss.IndexBinaryFlat(db.shape[1] * 8)
    flat.add(db)
    # FAISS's scan has kernels for 8, 16, 32 and 64-byte codes only, other widths take a generic
    # loop: the same codes padded with zero bytes to the next of those widths are a second scan
    width = next(w for w in (8, 16, 32, 64, db.shape[1]) if w >= db.shape[1])
    padded = None
    if width != db.shape[1]:
        padded = faiss.IndexBinaryFlat(width * 8)
        padded.add(np.pad(db, ((0, 0), (0, width - db.shape[1]))))
        queries_padded = np.pad(queries, ((0, 0), (0, width - queries.shape[1])))
    print(f"N={n:.0e} K={bits} {kind}: build {seconds:.2f} s, {described['type']}"
          f"{'' if described['type'] == 'IndexBinaryHash' else ' x' + str(described['substrings'])}, "
          f"structure {stored / n:.1f} bytes/item beside {db.shape[1]} bytes/item of codes", flush=True)
    for r in args.radii:
        # a ball can hold a large share of the database (clustered codes, few bits): keep the answers
        # of all queries within --max-results items, with fewer queries, and say so
        probe = np.mean([len(ids) for ids, _ in ix.within(structure, described, queries[:10], r)])
        q = queries if probe * len(queries) <= args.max_results else queries[:max(1, int(args.max_results // max(probe, 1)))]
        note = "" if len(q) == len(queries) else f" ({len(q)} queries: the answers would exceed {args.max_results:.0e} items)"
        stats, compared = faiss.cvar.indexBinaryHash_stats, []

        def lookup():
            stats.reset()
            found = ix.within(structure, described, q, r)
            compared.append(stats.ndis / len(q))  # codes compared per query (candidates of the lookups)
            return found

        sides = {"index": lookup, "scan": lambda: scan_within(flat, q, r)}
        if padded is not None:
            sides["scan64"] = lambda: scan_within(padded, queries_padded[:len(q)], r)
        out, load = interleaved(sides, args.rounds)
        got = {side: result for side, (_, result) in out.items()}
        checked = compared[-1]
        want = got["scan"]
        found = [ids for ids, _ in got["index"]]
        identical = same_sets(found, want) and (padded is None or same_sets(got["scan64"], want))
        # what answering costs beyond the lookup: ranking and copying out each query's items
        ix.set_radius(structure, described, r)
        lims, D, I = structure.range_search(q, r + 1)
        answers = timed(lambda: [ix._ranked(I[lims[j]:lims[j + 1]], D[lims[j]:lims[j + 1]]) for j in range(len(q))])[0]
        med = {side: statistics.median(t) for side, (t, _) in out.items()}
        also = "" if padded is None else f", scan padded to {width * 8} bits {med['scan64'] * 1e3:.1f} ms"
        ratio = "" if padded is None else f", scan64 / index = {med['scan64'] / med['index']:.1f}"
        print(f"  r={r}{note}: identical sets: {'yes' if identical else 'NO'}; {np.mean([len(x) for x in want]):.1f} "
              f"items per query, {checked:.0f} codes compared per query by the index, ranking the answers "
              f"{100 * answers / med['index']:.0f}% of its time; median index {med['index'] * 1e3:.1f} ms, "
              f"scan {med['scan'] * 1e3:.1f} ms{also}; other processes {load:.2f} cores; scan / index = "
              f"{med['scan'] / med['index']:.1f}{ratio}", flush=True)
    if args.topk:
        out, load = interleaved({"index": lambda: ix.top_k(flat, queries, args.topk),
                                 "scan": lambda: flat.search(queries, args.topk)}, args.rounds)
        a, b = (statistics.median(out[side][0]) for side in ("index", "scan"))
        print(f"  top {args.topk} (ties by id): median index {a * 1e3:.1f} ms, scan {b * 1e3:.1f} ms; other processes "
              f"{load:.2f} cores; scan / index = {b / a:.2f}", flush=True)


def _built(db):
    structure, described = ix.structure(db.shape[1] * 8)
    structure.add(db)
    return structure, described


def bench_encode(run, images, rounds):
    """build's encoding (read, decode, preprocess, forward) against the forward pass alone."""
    import torch
    from PIL import Image

    from utils.data.loader import load_digits

    encoder = ix.load_encoder(run, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        pictures = load_digits()[0]
        paths = []
        for i in range(images):
            paths.append(os.path.join(tmp, f"{i}.png"))
            Image.fromarray(pictures[i % len(pictures)]).save(paths[-1])
        transform = ix.transform_of(encoder.preprocessing)
        x = torch.stack([ix.read_image(p, transform, "bench") for p in paths[:64]])
        out, load = interleaved({"build": lambda: ix.encode_files(encoder, paths, 64, 2, progress=False),
                                 "forward": lambda: [encoder.codes(x) for _ in range(-(-images // 64))]}, rounds)
    a, b = (images / statistics.median(out[side][0]) for side in ("build", "forward"))
    print(f"encoding {images} images with {encoder.kind}: build {a:.0f} images/s, forward alone {b:.0f} "
          f"images/s; other processes {load:.2f} cores; build / forward = {a / b:.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100000,1000000", help="database sizes N, 0 for none (--encode alone) (default: 100000,1000000)")
    p.add_argument("--bits", default="12,48,64", help="code lengths K (default: 12,48,64)")
    p.add_argument("--kinds", default="random,clustered", help="kinds of codes (default: random,clustered)")
    p.add_argument("--radii", default="0,1,2", help="radii (default: 0,1,2)")
    p.add_argument("--queries", type=int, default=1000, help="queries (default: 1000)")
    p.add_argument("--rounds", type=int, default=5, help="timed calls per side (default: 5)")
    p.add_argument("--topk", type=int, default=100, help="k of the top-k comparison, 0 for none (default: 100)")
    p.add_argument("--max-results", type=float, default=5e7, help="most items all queries' answers may hold "
                                                                     "(default: 5e7)")
    p.add_argument("--encode", help="a MAH run folder or MMHH snapshot: also time build's encoding (default: none)")
    p.add_argument("--images", type=int, default=2000, help="images for --encode (default: 2000)")
    args = p.parse_args()
    args.radii = [int(r) for r in args.radii.split(",")]
    rng = np.random.default_rng(0)
    import faiss

    print(f"faiss {faiss.__version__}, {os.cpu_count()} cores, {args.queries} queries, {args.rounds} rounds")
    for n in (int(float(s)) for s in args.sizes.split(",") if s and float(s) > 0):
        for bits in (int(b) for b in args.bits.split(",")):
            for kind in args.kinds.split(","):
                bench_codes(n, bits, kind, args, rng)
    if args.encode:
        bench_encode(args.encode, args.images, args.rounds)
    print(f"peak resident memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GB")


if __name__ == "__main__":
    main()
