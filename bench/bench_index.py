"""Search as `python -m utils.index search` does it, against the padded scan and against FAISS's
own IndexBinaryFlat on the codes as stored, on the same codes and queries; and how fast
`build` encodes images.

For each database size N, code length K and kind of codes: uniformly random, or clustered
like trained codes (--centres centres, each bit flipped with probability --flip), with
--queries queries of the same kind:
- the structure `build` chooses (utils.index.choose, `--structure auto`) and why; seconds to
  choose and build it;
- radius r: every item within r, ranked by (distance, id), by the chosen structure (at the
  radii its cost model chose it for; else the block scan of the distinct codes, their items
  then taken, where the items are at least 1.5 times as many, or of the padded codes), by the padded
  scan (FAISS's IndexBinaryFlat over the codes zero-padded to the width it has a fast kernel
  for), and by FAISS's IndexBinaryFlat on the codes as stored; all three rank the answers the
  same way, and must agree exactly;
- top k: search's top k (through the distinct codes where the items are at least 1.5 times
  as many, else a range scan of the padded codes at a radius sized on a sample; ties by id)
  against FAISS's heap scan of the padded codes and of the codes as stored (ties in FAISS's
  order): the distances must agree, and the items up to the k-th distance.
Each side is called once untimed, then --rounds times in turns (bench_metrics.interleaved);
the ratios are of medians (other side / index: above 1, the index is faster). Items per
query, and codes the structure compared per query, come with each line; the other
processes' load last on it. Besides printing them, it writes the figures to a JSON summary
(the commit, cores, versions, and each case's medians and ratios; rewritten after each set of
codes, "complete" once every one is done), from which `make report`
writes the README's sentence on search and the table of docs/index.md.

    python bench/bench_index.py                      # N = 10^6 and 10^7, K = 12 and 48, r = 2, top 100
    python bench/bench_index.py --quick              # N = 10^4 and 10^5: a check that it runs
    python bench/bench_index.py --sizes 0 --encode RUN_FOLDER   # build's images/s against forward alone
"""
import argparse
import os
import resource
import statistics
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench_metrics import interleaved, timed  # noqa: E402  (the timing every bench shares)
from utils import index as ix  # noqa: E402
from utils.data.feeder import default_workers  # noqa: E402

def codes(kind, n, bits, rng, centres, flip, chunk=250_000):
    """n x ceil(K / 8) packed codes: uniformly random, or each a random one of `centres` with
    every bit flipped with probability `flip`; made `chunk` rows at a time."""
    out = np.empty((n, -(-bits // 8)), np.uint8)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        noise = rng.random((m, bits), dtype=np.float32)
        rows = noise < 0.5 if kind == "random" else \
            centres[rng.integers(0, len(centres), m)] ^ (noise < flip)
        out[start:start + m] = ix.pack(rows)
    return out


def same(a, b):
    return all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))


def same_top(found, D, I):
    """search's top k against FAISS's (D, I): the same distances, and the same items below the k-th."""
    for (ids, dist), d, i in zip(found, D, I):
        if not np.array_equal(dist, d) or set(ids[dist < dist[-1]]) != set(i[d < d[-1]]):
            return False
    return True


def bench_codes(n, bits, kind, args, rng):
    """The cases of one set of codes (each radius, then top k), as the summary keeps them."""
    import faiss

    centres = rng.random((args.centres, bits)) < 0.5
    stored = codes(kind, n, bits, rng, centres, args.flip)
    asked = codes(kind, args.queries, bits, rng, centres, args.flip)  # queries like the database
    width = ix.scan_width(stored.shape[1])
    padded, queries = ix.pad(stored, width), ix.pad(asked, width)
    seconds, (structure, described, groups, scan) = timed(lambda: _built(padded, bits))
    flat, faiss_flat = scan.flat, ix.flat_index(stored)
    plain = ix.flat_index(padded)  # FAISS's IndexBinaryFlat over the padded codes: the padded scan
    chosen = described["type"] if structure is None else \
        f"{described['type']} x{described['substrings']} to r={described['up_to_radius']}"
    chosen += "" if groups is None else f"; top k by {len(groups.sizes)} distinct codes"
    print(f"N={n:.0e} K={bits} {kind}: {stored.shape[1]} bytes/item stored, searched {width} wide; chose {chosen} "
          f"in {seconds:.2f} s: {described['reason']}", flush=True)
    codes_set = {"kind": kind, "n": n, "bits": bits, "bytes_stored": int(stored.shape[1]), "width": int(width),
                 "chosen": chosen, "reason": described["reason"], "build_seconds": seconds}
    cases = []
    for r in args.radii:
        # a ball can hold a large share of the database (clustered codes, few bits): fewer queries
        # keep all the answers within --max-results items, and say so
        probe = np.mean([len(ids) for ids, _ in ix.within(flat, None, ix.SCAN, queries[:10], r)])
        q = len(queries) if probe * len(queries) <= args.max_results else \
            max(1, int(args.max_results // max(probe, 1)))
        stats, compared = faiss.cvar.indexBinaryHash_stats, []

        def lookup():
            stats.reset()
            found = ix.within(flat, structure, described, queries[:q], r, groups)
            compared.append(stats.ndis / q)  # codes the structure compared per query (0: scanned)
            return found

        out, load = interleaved({"index": lookup, "padded": lambda: ix.within(plain, None, ix.SCAN, queries[:q], r),
                                 "faiss": lambda: ix.within(faiss_flat, None, ix.SCAN, asked[:q], r)}, args.rounds)
        got = {side: result for side, (_, result) in out.items()}
        identical = same(got["index"], got["padded"]) and same(got["index"], got["faiss"])
        scanned = structure is None or r > described["up_to_radius"]
        how = "scanned" if scanned else f"{compared[-1]:.0f} codes compared by the structure"
        items = float(np.mean([len(i) for i, _ in got["index"]]))
        cases.append({**codes_set, "search": f"radius {r}", "searched_by": described["type"] if not scanned else
                      "block scan" if groups is None else "distinct codes", "queries": q, "items_per_query": items,
                      "compared_per_query": None if scanned else compared[-1],
                      **line(f"r={r}", out, load, identical, f"{items:.1f} items a query, {how}"
                             + ("" if q == len(queries) else f", {q} queries"))})
    if args.topk:
        out, load = interleaved({"index": lambda: ix.top_k(scan, queries, args.topk, groups),
                                 "padded": lambda: plain.search(queries, args.topk),  # ties in FAISS's order
                                 "faiss": lambda: faiss_flat.search(asked, args.topk)}, args.rounds)
        got = {side: result for side, (_, result) in out.items()}
        identical = same_top(got["index"], *got["padded"]) and same_top(got["index"], *got["faiss"])
        cases.append({**codes_set, "search": f"top {args.topk}",
                      "searched_by": "radius scan" if groups is None else "distinct codes",
                      "queries": len(queries), "items_per_query": float(args.topk), "compared_per_query": None,
                      **line(f"top {args.topk}", out, load, identical, "ties by id against FAISS's order")})
    return cases


def line(what, out, load, identical, note):
    """Prints one case; returns its figures for the summary (ratios: other side / index)."""
    med = {side: statistics.median(t) for side, (t, _) in out.items()}
    ratios = {side: med[side] / med["index"] for side in ("padded", "faiss")}
    print(f"  {what}: identical: {'yes' if identical else 'NO'}; median index {med['index'] * 1e3:.1f} ms, padded "
          f"scan {med['padded'] * 1e3:.1f} ms, IndexBinaryFlat {med['faiss'] * 1e3:.1f} ms; index vs padded scan "
          f"{ratios['padded']:.2f}x, vs IndexBinaryFlat {ratios['faiss']:.2f}x; {note}; "
          f"other processes {load:.2f} cores", flush=True)
    return {"identical": bool(identical), "median_seconds": med, "ratios": ratios, "other_processes_cores": load}


def _built(padded, bits):
    """What `build` then `search` make of the codes: the structure, its description, the groups,
    the scan (with its sample)."""
    described = ix.choose("auto", padded, bits)
    groups = ix.Groups(padded)
    groups = groups if ix.grouped(len(padded), len(groups.sizes)) else None
    if described["type"] == "scan":
        return None, described, groups, ix.Scan(padded)
    structure = ix.new_structure(bits, padded.shape[1])
    structure.add(padded)
    return structure, described, groups, ix.Scan(padded)


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
        x = ix.network_input(encoder)(torch.stack([ix.read_image(p, transform, "bench") for p in paths[:64]]))
        out, load = interleaved({"build": lambda: ix.encode_files(encoder, paths, 64, None, progress=False),
                                 "forward": lambda: [encoder.codes(x) for _ in range(-(-images // 64))],
                                 "decode": lambda: [ix.read_image(p, transform, "bench") for p in paths]}, rounds)
    a, b, c = (images / statistics.median(out[side][0]) for side in ("build", "forward", "decode"))
    workers = default_workers()
    print(f"encoding {images} images with {encoder.kind}: build {a:.0f} images/s ({workers} decoding workers), "
          f"forward alone {b:.0f} images/s, decoding alone (one process) {c:.0f} images/s; other "
          f"processes {load:.2f} cores; build / forward = {a / b:.2f}")
    return {"model": encoder.kind, "images": images, "build_images_per_second": a, "forward_images_per_second": b,
            "decode_images_per_second": c, "workers": workers,
            "torch": torch.__version__, "other_processes_cores": load}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1e6,1e7", help="database sizes N, 0 for none (--encode alone) "
                                                      "(default: 1e6,1e7)")
    p.add_argument("--quick", action="store_true", help="N = 1e4 and 1e5 instead of --sizes, to check that the "
                                                        "bench runs (default: off)")
    p.add_argument("--bits", default="12,48", help="code lengths K (default: 12,48)")
    p.add_argument("--kinds", default="random,clustered", help="kinds of codes (default: random,clustered)")
    p.add_argument("--centres", type=int, default=300, help="centres of clustered codes (default: 300)")
    p.add_argument("--flip", type=float, default=0.04, help="probability a bit of a clustered code differs from "
                                                            "its centre's (default: 0.04)")
    p.add_argument("--radii", default="2", help="radii (default: 2)")
    p.add_argument("--topk", type=int, default=100, help="k of the top-k comparison, 0 for none (default: 100)")
    p.add_argument("--queries", type=int, default=1000, help="queries (default: 1000)")
    p.add_argument("--rounds", type=int, default=3, help="timed calls per side (default: 3)")
    p.add_argument("--max-results", type=float, default=2e7, help="most items all queries' answers may hold "
                                                                     "(default: 2e7)")
    p.add_argument("--encode", help="a MAH run folder or MMHH snapshot: also time build's encoding (default: none)")
    p.add_argument("--images", type=int, default=2000, help="images for --encode (default: 2000)")
    p.add_argument("--out", help="the JSON summary (default: bench/out/bench_index.json, which the report reads; "
                                 "with --quick, bench_index_quick.json in the temporary folder, so that a check "
                                 "never replaces the figures; with --sizes 0, bench/out/bench_index_encode.json)")
    args = p.parse_args()
    args.radii = [int(r) for r in args.radii.split(",")]
    sizes = "1e4,1e5" if args.quick else args.sizes
    sizes = [int(float(s)) for s in sizes.split(",") if s and float(s) > 0]
    out = args.out or (os.path.join(tempfile.gettempdir(), "bench_index_quick.json") if args.quick else
                       os.path.join(REPO, "bench", "out", "bench_index.json" if sizes else "bench_index_encode.json"))
    rng = np.random.default_rng(0)
    import faiss

    print(f"faiss {faiss.__version__}, {os.cpu_count()} cores, {args.queries} queries, {args.rounds} rounds")
    from utils import runs  # imports torch, whose memory the peak below includes

    found = runs.provenance()  # the code measured: files edited while the bench runs do not count

    def write(cases, encode, complete):
        """The summary so far: rewritten after every set of codes, so a stopped bench keeps its cases."""
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        runs.write_json(out, {
            **found, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "numpy": np.__version__,
            "faiss": faiss.__version__,
            "quick": args.quick, "complete": complete, "queries": args.queries, "rounds": args.rounds,
            "centres": args.centres, "flip": args.flip, "max_results": args.max_results, "peak_resident_gb": peak,
            "cases": cases, "encode": encode})
        return peak

    cases = []
    for n in sizes:
        for bits in (int(b) for b in args.bits.split(",")):
            for kind in args.kinds.split(","):
                cases += bench_codes(n, bits, kind, args, rng)
                write(cases, None, False)
    encode = bench_encode(args.encode, args.images, args.rounds) if args.encode else None
    peak = write(cases, encode, True)
    print(f"peak resident memory of the process: {peak:.2f} GB")
    print(f"summary: {out}")


if __name__ == "__main__":
    main()
