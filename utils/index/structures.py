"""Packed codes, the padded flat scan, the lookup structures and the choice between them.

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
missed, and every candidate's distance is checked.
"""
import math

import faiss
import numpy as np

SUBSTRING_BITS = 16  # the longest substring a lookup table is keyed on
KERNEL_BYTES = (4, 8, 16)  # up to 16 bytes, the widths FAISS's Hamming kernels take whole

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

def within(flat, structure, described, queries, radius):
    """For each of Q x width padded queries, (item ids, distances) of every item at distance
    <= radius, ranked by (distance, id): by the structure up to its radius, else the scan."""
    index = flat
    if structure is not None and radius <= described["up_to_radius"]:
        index = structure
        structure.nflip = flips(described, radius)
    lims, D, I = index.range_search(queries, radius + 1)  # FAISS keeps d < radius
    lims = lims.astype(np.int64)  # FAISS's size_t offsets
    owner = np.repeat(np.arange(len(queries)), np.diff(lims))
    order = np.lexsort((I, D, owner))
    I, D = I[order].astype(np.int64), D[order].astype(np.int64)
    return [(I[a:z], D[a:z]) for a, z in zip(lims[:-1], lims[1:])]


# ------------------------------------------------------------------------- top k by distinct codes

GROUPED = 1.5  # top k goes through the distinct codes where the items are at least 1.5 times as many
DEPTH = 4  # the heap scan keeps DEPTH x k: it costs little more than k, and leaves few ties to settle
HEAP_BYTES = 2 ** 28  # most memory the heap scan's answers may take at once (queries are batched to fit)


class Groups:
    """The items grouped by code: a flat scan of the D distinct padded codes, and each code's
    item ids, ascending. Trained codes repeat (a class's items share a few codes; 12 bits give
    at most 4,096), so a scan of the D codes stands for one of the N items, and ties between
    codes are far fewer than between items."""

    def __init__(self, padded, order=None, sizes=None):
        """From N x width padded codes; `order` (N, the ids by code, each code's ascending) and
        `sizes` (D, items a code) as an index folder keeps them, else computed."""
        if order is None:
            words = padded.view(np.uint32 if padded.shape[1] == 4 else np.uint64)  # N x width/8 (or N x 1)
            by_row = {"axis": 0} if words.shape[1] > 1 else {}  # one word a code: the far faster 1-D unique
            _, inverse, sizes = np.unique(words if by_row else words[:, 0], return_inverse=True,
                                          return_counts=True, **by_row)
            order = np.argsort(inverse.reshape(-1), kind="stable")
        self.order, self.sizes = np.asarray(order, np.int64), np.asarray(sizes, np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])  # D + 1
        self.flat = flat_index(padded[self.order[self.starts[:-1]]])  # the D codes, each by its first item

    def items(self, groups):
        """The item ids of `groups`, one group after another, each ascending."""
        lengths = self.sizes[groups]
        at = np.repeat(self.starts[groups] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return self.order[at + np.arange(lengths.sum())]

    def nearest(self, codes, dist, t, k):
        """The k nearest (item ids, distances), ties by id, from `codes` at distances `dist`, which
        hold every code within t, the k-th item's distance."""
        ids, dists = _ranked(self.items(codes[dist < t]), np.repeat(dist[dist < t], self.sizes[codes[dist < t]]))
        at_t = self.items(codes[dist == t])
        rest = k - len(ids)  # at least 1, at most len(at_t)
        lowest = np.sort(np.partition(at_t, rest - 1)[:rest] if rest < len(at_t) else at_t)
        return np.concatenate([ids, lowest]), np.concatenate([dists, np.full(rest, t, np.int64)])


def grouped(n, distinct, asked="auto"):
    """Whether top k goes through the distinct codes (not under --structure scan)."""
    return asked != "scan" and distinct * GROUPED <= n


def top_k_grouped(groups, queries, k, chunk=100, memory=HEAP_BYTES):
    """For each of Q x width padded queries, the k nearest (item ids, distances), ties by id,
    from the distinct codes: FAISS's heap scan of them keeps the k' = DEPTH x k nearest codes
    (at least k items), t is the least distance within which k of their items lie. Where the
    k'-th code lies beyond t, every code within t is among the k' (as in top_k); else the codes
    within t are fetched by a range scan of the codes, `chunk` queries at a time. Every item
    nearer than t is taken, and of those at t the lowest ids."""
    k = min(k, len(groups.order))
    depth = min(DEPTH * k, len(groups.sizes))
    out = []
    step = max(1, memory // (12 * depth))  # 4-byte distances and 8-byte ids a kept code
    for start in range(0, len(queries), step):
        batch = queries[start:start + step]
        dist, codes = groups.flat.search(batch, depth)  # q x k', ascending distances
        found, tied = [], {}
        for q, (d, c) in enumerate(zip(dist, codes)):
            t = int(d[np.searchsorted(np.cumsum(groups.sizes[c]), k)])  # the k-th item's distance
            if t == d[-1] and depth < len(groups.sizes):  # codes at t may have been left out
                tied.setdefault(t, []).append(q)
                found.append(None)
            else:
                found.append(groups.nearest(c, d, t, k))
        for t, qs in tied.items():
            for at in range(0, len(qs), chunk):
                part = qs[at:at + chunk]
                for q, (c, d) in zip(part, within(groups.flat, None, SCAN, batch[part], t)):
                    found[q] = groups.nearest(c, d, t, k)
        out += found
    return out


def top_k(flat, queries, k, structure=None, described=None, groups=None, chunk=100, memory=HEAP_BYTES):
    """For each of Q x width padded queries, the k nearest (item ids, distances), ties by id:
    through the distinct codes where `groups` holds them (top_k_grouped), else by FAISS's heap
    scan. That keeps the k' = DEPTH x k nearest, with ties at its last distance broken
    arbitrarily. Where the k'-th distance lies beyond the k-th one, t, every item within t is
    among the k' (an item left out would have displaced one farther than t), so the first k
    by (distance, id) of the k' are the answer. Where the k'-th distance is t too, every item
    within t is fetched (`within`: by the lookup structure when its radius covers t, else the
    scan), `chunk` queries at a time, and its first k taken."""
    if groups is not None:
        return top_k_grouped(groups, queries, k)
    k = min(k, flat.ntotal)
    depth = min(DEPTH * k, flat.ntotal)
    out = []
    step = max(1, memory // (12 * depth))  # 4-byte distances and 8-byte ids a kept item
    for start in range(0, len(queries), step):
        batch = queries[start:start + step]
        D, I = flat.search(batch, depth)  # q x k', ascending distances
        cut = D[:, k - 1]  # the k-th distance
        tied = (D[:, -1] == cut) & (depth < flat.ntotal)
        key = np.sort(D.astype(np.int64) * flat.ntotal + I, axis=1)[:, :k]  # q x k, by (distance, id)
        found = [None if tied[q] else (key[q] % flat.ntotal, key[q] // flat.ntotal) for q in range(len(batch))]
        for t in np.unique(cut[tied]):
            group = np.flatnonzero(tied & (cut == t))
            for at in range(0, len(group), chunk):
                qs = group[at:at + chunk]
                for q, (ids, dist) in zip(qs, within(flat, structure, described or SCAN, batch[qs], int(t))):
                    found[q] = (ids[:k], dist[:k])
        out += found
    return out


def _ranked(ids, dist):
    order = np.lexsort((ids, dist))
    return ids[order].astype(np.int64), dist[order].astype(np.int64)
