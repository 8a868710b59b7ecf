"""Packed codes, the padded scans, the lookup structures, the choice between them, and top k.

Codes are packed 8 bits to a byte (bit j of a code is bit j % 8 of byte j // 8) and, for
searching, padded with zero bytes to a width FAISS has a fast Hamming kernel for: 4, 8 or
16 bytes, else the next multiple of 8. Its other widths (6 bytes for 48 bits, 2 for 12) take
a loop over single bytes, about 5 times slower. Padding bits are 0 on both sides of every
comparison, so distances, and so answers, are the same.

The lookup structure (FAISS) tiles the K bits with m substrings of b <= 16 bits: one hash
table over all the bits up to 16 (IndexBinaryHash), else multi-index hashing
(IndexBinaryMultiHash; Norouzi, Punjani and Fleet 2012). A lookup at radius r visits every
bucket within floor(r / m) flips of each of the query's substrings; two codes within r
differ in at most floor(r / m) bits of at least one substring (pigeonhole), so no item is
missed, and every candidate's distance is checked. Without one, the padded codes are scanned
a block at a time (BlockScan).

Where items repeat codes, radius search and top k scan the distinct codes instead and take
their items (Groups). Top k is the first k of the ball within a radius read off a sample (top_k).
"""
import math

import faiss
import numpy as np

SUBSTRING_BITS = 16  # the longest substring a lookup table is keyed on
KERNEL_BYTES = (4, 8, 16)  # up to 16 bytes, the widths FAISS's Hamming kernels take whole
BLOCK_BYTES = 2 ** 19  # a block of the range scan: 512 KB, within a core's L2 cache
CACHED_BYTES = 2 ** 22  # codes up to 4 MB stay in the shared cache: scanned whole, with nothing to merge

# The cost model, per query, in units of one code compared by the padded scan. A visit (an
# item of a looked-up bucket: a hash-set insertion, then a code read from anywhere in memory)
# costs about 300 codes scanned in order, a bucket lookup about 100, a query's fixed work
# about 5,000 (fitted to bench/out/bench_index*.txt, 10^5 to 10^7 codes, random and
# clustered). The structure is used only where the model puts it at least SAFETY times ahead.
VISIT, LOOKUP, PER_QUERY, SAFETY = 300, 100, 5000, 2.0
REFERENCE_RADIUS = 2  # the radius the choice is explained at (the metrics' Hamming ball)
SCAN = {"type": "scan", "up_to_radius": -1}  # the description under which every search scans


def pack(codes):
    """N x K codes in {-1, +1} (or {0, 1}) -> N x ceil(K / 8) uint8, bit j of a code in byte j // 8;
    the padding bits are 0 for every item, so they add no distance."""
    bits = (np.asarray(codes) > 0).astype(np.uint8)
    return np.packbits(bits, axis=1, bitorder="little")


def scan_width(width):
    """The width (bytes) codes of `width` bytes are searched at."""
    return next((w for w in KERNEL_BYTES if w >= width), -(-width // 8) * 8)


def pad(packed, width):
    """N x w packed codes -> N x width, zero bytes on the right."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    return packed if packed.shape[1] == width else np.pad(packed, ((0, 0), (0, width - packed.shape[1])))


def flat_index(padded):
    """The exact linear scan (FAISS's IndexBinaryFlat) over N x width padded codes."""
    flat = faiss.IndexBinaryFlat(padded.shape[1] * 8)
    flat.add(padded)
    return flat


class BlockScan:
    """The exact range scan over N x width padded codes, a block of BLOCK_BYTES at a time.
    FAISS's range scan reads the whole database for each query in turn, from memory once it
    outgrows the cache; over one block, every query reads it while it stays in cache."""

    def __init__(self, padded):
        self.ntotal, self.code_size = len(padded), padded.shape[1]
        block = len(padded) if padded.nbytes <= CACHED_BYTES else BLOCK_BYTES // self.code_size
        block = max(block, 1)
        self.blocks = [(start, flat_index(padded[start:start + block])) for start in range(0, len(padded), block)]

    def answers(self, queries, radius, short):
        """Every item at distance d < radius from query q, as answer_keys gives them, block after
        block: each block's keys are made while its answers are in cache."""
        span = self.code_size * 8 + 1
        return [answer_keys(*flat.range_search(queries, radius), span, self.ntotal, start, short)
                for start, flat in self.blocks]


def answer_keys(lims, D, I, span, n, start=0, short=False):
    """FAISS's range answers (lims, D, I) as sort keys, in FAISS's order: short, the uint16 key
    q * span + d and the int64 ids start + id apart (Q x span must be at most 2^16); else one
    int64 key (q * span + d) * n + start + id and None. Sorted, either is by (query, distance, id)."""
    owner = np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype(np.int64)))  # FAISS's size_t offsets
    if short:
        return (owner * span + D).astype(np.uint16), I.astype(np.int64) + start
    return (owner * span + D.astype(np.int64)) * n + (I.astype(np.int64) + start), None


def substrings(bits):
    """(m, b): the fewest substrings of at most 16 bits covering K bits, b = ceil(K / m) bits
    each (bits past K are padding, 0 in every code)."""
    m = -(-bits // SUBSTRING_BITS)
    return m, -(-bits // m)


def new_structure(bits, width):
    """An empty lookup structure for K-bit codes stored `width` bytes wide."""
    m, b = substrings(bits)
    if m == 1:
        return faiss.IndexBinaryHash(width * 8, b)
    return faiss.IndexBinaryMultiHash(width * 8, m, b)


def flips(described, radius):
    """Flips per substring lookup that find every item within `radius` (see the module's note)."""
    return radius // described["substrings"]


# ------------------------------------------------------------------------- the cost model

def substring_values(padded, start, b):
    """N values of the b bits of each code from bit `start` on (b <= 16)."""
    byte, shift = divmod(start, 8)
    cols = np.pad(padded, ((0, 0), (0, 3)))[:, byte:byte + 3].astype(np.uint32)  # N x 3
    return ((cols[:, 0] | cols[:, 1] << 8 | cols[:, 2] << 16) >> shift) & ((1 << b) - 1)


def walsh_hadamard(a):
    """The Walsh-Hadamard transform of a 2^b vector: XOR convolution becomes a product."""
    a = np.asarray(a, dtype=np.float64)
    h = 1
    while h < len(a):
        pairs = a.reshape(-1, 2, h)
        a = np.stack((pairs[:, 0] + pairs[:, 1], pairs[:, 0] - pairs[:, 1]), 1).reshape(-1)
        h *= 2
    return a


def expected_visits(spectra, b, f, n):
    """Items a lookup with f flips visits, summed over the substrings, for a query drawn like the
    database: sum over each substring's buckets v of (n_v / N) * (items within f flips of v).
    With H the Walsh-Hadamard transform and g the indicator of at most f flips, that is
    sum(H(n)^2 H(g)) / (2^b N)."""
    g = walsh_hadamard(np.bitwise_count(np.arange(2 ** b)) <= f)
    return float(sum(s @ g for s in spectra) / (2 ** b * max(n, 1)))


def bucket_spectra(padded, bits):
    """Each substring's bucket counts (2^b) and the squares of their Walsh-Hadamard transforms."""
    m, b = substrings(bits)
    counts = [np.bincount(substring_values(padded, h * b, b), minlength=2 ** b) for h in range(m)]
    return counts, [walsh_hadamard(c) ** 2 for c in counts]


def choose(asked, padded, bits):
    """The structure's description: whether a lookup structure is built and up to which radius
    search uses it ("up_to_radius"; above it, and without one, the padded scan), why, and the
    cost model's figures. asked: auto, scan or mih (--structure)."""
    n, width = padded.shape
    m, b = substrings(bits)
    kind = "IndexBinaryHash" if m == 1 else "IndexBinaryMultiHash"
    described = {"type": kind, "substrings": m, "b": b, "asked": asked}
    if asked == "scan":
        return {"type": "scan", "asked": asked, "up_to_radius": -1,
                "reason": "--structure scan: every search scans the padded codes"}
    counts, spectra = bucket_spectra(padded, bits)
    scan = n * max(1.0, width / 8)
    model, up_to = [], -1
    for r in range(bits + 1):
        f = min(r // m, b)
        lookups = m * sum(math.comb(b, j) for j in range(f + 1))
        visits = expected_visits(spectra, b, f, n)
        speedup = scan / (PER_QUERY + LOOKUP * lookups + VISIT * visits)
        model.append({"radius": r, "lookups": lookups, "visits": round(visits, 1), "speedup": round(speedup, 2)})
        if speedup < SAFETY:
            break
        up_to = r
    # other items a lookup visits (the query's own code aside) against codes spread evenly
    crowding = max(expected_visits(spectra, b, 0, n) - m, 0) / (m * max(n - 1, 1) / 2 ** b)
    described.update(
        buckets={"largest_share": round(max(int(c.max()) for c in counts) / n, 4), "crowding": round(crowding, 1)},
        model=model[:REFERENCE_RADIUS + 1] if up_to < REFERENCE_RADIUS else model[:up_to + 2])
    at = model[min(REFERENCE_RADIUS, len(model) - 1)]
    figures = (f"by the cost model, a lookup at radius {at['radius']} visits {at['visits']:g} codes a query where "
               f"the scan compares {n} ({at['speedup']:g}x the scan's speed; the substrings' buckets are "
               f"{crowding:.1f}x as crowded as with random codes)")
    if asked == "mih":
        return {**described, "up_to_radius": bits, "reason": f"--structure mih: used at every radius; {figures}"}
    if up_to < 0:
        return {"type": "scan", "asked": asked, "up_to_radius": -1, "buckets": described["buckets"],
                "model": described["model"],
                "reason": f"the padded scan: {figures}; the structure is used where it is {SAFETY:g}x ahead"}
    radii = "radius 0" if up_to == 0 else f"radii 0 to {up_to}"
    return {**described, "up_to_radius": up_to, "reason": f"{kind} for {radii}, the padded scan above: {figures}"}


# ------------------------------------------------------------------------- lookups

def within(flat, structure, described, queries, radius, groups=None):
    """For each of Q x width padded queries, (item ids, distances) of every item at distance
    <= radius, ranked by (distance, id): by the structure up to its radius, else the scan, of
    the distinct codes where `groups` holds them (their items then taken: Groups.ball)."""
    index = flat
    if structure is not None and radius <= described["up_to_radius"]:
        index = structure
        structure.nflip = flips(described, radius)
    elif groups is not None:
        return [groups.ball(codes, dist) for codes, dist in within(groups.flat, None, SCAN, queries, radius)]
    n, span = flat.ntotal, flat.code_size * 8 + 1  # item ids and distances lie below these
    if len(queries) > 1 and len(queries) * span * n >= 2 ** 63:  # the sort key below would overflow
        half = len(queries) // 2
        return within(flat, structure, described, queries[:half], radius) + \
            within(flat, structure, described, queries[half:], radius)
    # a scan answers each query in item order, block after block: then a stable sort of the short
    # key (query, distance), a radix sort linear in the answers, leaves every tie ordered by id
    short = index is not structure and len(queries) * span <= 2 ** 16
    if isinstance(index, BlockScan):
        parts = index.answers(queries, radius + 1, short)  # FAISS keeps d < radius
    else:
        parts = [answer_keys(*index.range_search(queries, radius + 1), span, n, short=short)]
    key = np.concatenate([np.zeros(0, np.uint16 if short else np.int64)] + [k for k, _ in parts])
    if short:
        ids = np.concatenate([np.zeros(0, np.int64)] + [i for _, i in parts])
        order = np.argsort(key, kind="stable")
        key, ids = key[order], ids[order]
        if np.all((np.diff(ids) > 0) | (np.diff(key) != 0)):  # item order checked, not assumed
            lims = np.searchsorted(key, np.arange(len(queries) + 1) * span)
            D = (key % span).astype(np.int64)
            return [(ids[a:z], D[a:z]) for a, z in zip(lims[:-1], lims[1:])]
        key = key.astype(np.int64) * n + ids  # the one int64 key below
    key.sort()  # by (query, distance, id): one sort of int64, in place
    lims = np.searchsorted(key, np.arange(len(queries) + 1) * (span * n))
    I, D = key % n, key // n % span
    return [(I[a:z], D[a:z]) for a, z in zip(lims[:-1], lims[1:])]


# ------------------------------------------------------------------------- top k

GROUPED = 1.5  # searches go through the distinct codes where the items are at least 1.5 times as many
BALL_BYTES = 2 ** 28  # most memory top k's balls may take at once (queries are batched to fit)
SAMPLE = 32  # top k sizes its radius on one of every 32 items: a 32nd of a scan


def batches(queries, per_query, memory):
    """Consecutive batches of the queries, each within `memory` at `per_query` bytes a query."""
    step = max(1, memory // max(per_query, 1))
    return (queries[start:start + step] for start in range(0, len(queries), step))


class Groups:
    """The items grouped by code: a range scan of the D distinct padded codes, and each code's
    item ids, ascending. Trained codes repeat (a class's items share a few codes; 12 bits give
    at most 4,096), so a scan of the D codes stands for one of the N items, and ties between
    codes are far fewer than between items."""

    def __init__(self, padded, order=None, sizes=None):
        """From N x width padded codes; `order` (N, the ids by code, each code's ascending) and
        `sizes` (D, items a code) as an index folder keeps them, else computed (grouping)."""
        if order is None:
            order, sizes = grouping(padded)
        self.order, self.sizes = np.asarray(order, np.int64), np.asarray(sizes, np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])  # D + 1
        self.flat = BlockScan(padded[self.order[self.starts[:-1]]])  # the D codes, each by its first item

    def items(self, groups):
        """The item ids of `groups`, one group after another, each ascending."""
        lengths = self.sizes[groups]
        at = np.repeat(self.starts[groups] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return self.order[at + np.arange(lengths.sum())]

    def ball(self, codes, dist):
        """(item ids, distances) of the items of `codes` at distances `dist`, ranked by (distance,
        id): one sort of the int64 key distance x N + id. A ball of codes repeated by thousands
        of items (12 bits: 79 codes within radius 2 of 4,096) costs that sort of its items,
        where the scan compares all N and ranks the same answers."""
        n = len(self.order)
        key = np.repeat(dist.astype(np.int64), self.sizes[codes]) * n + self.items(codes)
        key.sort()
        return key % n, key // n

    def nearest(self, codes, dist, k):
        """The k nearest (item ids, distances), ties by id, from `codes` ranked by distance `dist`,
        which hold at least k items and so every code within t, the k-th item's distance."""
        t = int(dist[np.searchsorted(np.cumsum(self.sizes[codes]), k)])
        ids, dists = self.ball(codes[dist < t], dist[dist < t])
        at_t = self.items(codes[dist == t])
        rest = k - len(ids)  # at least 1, at most len(at_t)
        lowest = np.sort(np.partition(at_t, rest - 1)[:rest] if rest < len(at_t) else at_t)
        return np.concatenate([ids, lowest]), np.concatenate([dists, np.full(rest, t, np.int64)])


def grouping(padded):
    """(order, sizes) of N x width padded codes: the item ids sorted by code (stable, so each
    code's ascending), and the items of each of the D distinct codes."""
    words = padded.view(np.uint32 if padded.shape[1] == 4 else np.uint64)  # N x width/8 (or N x 1)
    by_row = {"axis": 0} if words.shape[1] > 1 else {}  # one word a code: the far faster 1-D unique
    _, inverse, sizes = np.unique(words if by_row else words[:, 0], return_inverse=True, return_counts=True,
                                  **by_row)
    return np.argsort(inverse.reshape(-1), kind="stable"), sizes


def grouped(n, distinct, asked="auto"):
    """Whether searches go through the distinct codes (not under --structure scan)."""
    return asked != "scan" and distinct * GROUPED <= n


class Scan:
    """The range scan of N padded codes (BlockScan), and FAISS's flat scan of one of every
    SAMPLE of them, on which top k sizes the radius it fetches."""

    def __init__(self, padded):
        self.flat = BlockScan(padded)
        self.sample = flat_index(padded[::SAMPLE])


def top_k(scan, queries, k, groups=None, memory=BALL_BYTES):
    """For each of Q x width padded queries, the k nearest (item ids, distances), ties by id,
    from the ball of every item within a radius r: where it holds at least k items, every item
    within the k-th one's distance t is in it, so its first k by (distance, id) are the answer.
    The ball is a range scan of the items, or where `groups` holds them, of the distinct codes,
    whose items then are taken: every one nearer than t, and of those at t the lowest ids.
    r is the distance of the sample's m-th nearest item, m its expected share of the k nearest
    plus three standard deviations, so that the ball nearly always holds k (a query whose ball
    falls short is fetched again at r + 1). A range scan costs less than FAISS's heap scan of
    k (no heap to keep) and leaves no ties to settle. Queries go by radius, in batches that
    keep the balls the radius was sized for within `memory`."""
    n, s = scan.flat.ntotal, scan.sample.ntotal
    k = min(k, n)
    share = k * s / n  # the sample's expected number of the k nearest
    m = min(s, math.ceil(share + 3 * math.sqrt(share)) + 1)
    radius = scan.sample.search(queries, m)[0][:, m - 1].astype(np.int64)  # Q
    searched = scan.flat if groups is None else groups.flat
    found, todo = [None] * len(queries), np.arange(len(queries))
    while len(todo):
        short = []
        for r in np.unique(radius[todo]):
            for batch in batches(todo[radius[todo] == r], 12 * max(k, m * n // s), memory):  # 12 bytes an item
                for q, (ids, dist) in zip(batch, within(searched, None, SCAN, queries[batch], int(r))):
                    held = len(ids) if groups is None else groups.sizes[ids].sum()
                    if held < k:
                        short.append(q)
                    else:
                        found[q] = (ids[:k], dist[:k]) if groups is None else groups.nearest(ids, dist, k)
        todo = np.asarray(short, np.int64)
        radius[todo] += 1
    return found
