"""Retrieval metrics for binary hash codes: exact, vectorised, memory-bounded.

Conventions (docs/metrics.md):
- codes are +-1, shape Q x K (queries) and N x K (database); Hamming distance
  d = (K - q.v) / 2;
- labels are (Q,) integer class ids or (Q, C) multi-hot 0/1 rows; a database item
  is relevant to a query when they share at least one label;
- equal distances are ranked in database index order (ties="index"), or every
  order of them is taken as equally likely and the exact expectation is
  returned (ties="expected", He et al., CVPR 2018);
- with `query_scores` / `db_scores` (real-valued outputs before sign) items are
  ranked by q.v instead, larger first, equal scores in database index order.

Why it is fast. Database items that share a code and a label set ("cells") are
indistinguishable except for their index, so every per-distance count comes from
Q x cells work (or a table over all 2^K codes), not Q x N; tie-aware AP and
precision then need only those counts. On the CPU, compiled passes
(utils.hamming_kernels) do this work, and rank by (distance, index) without a
sort: an item's rank is the items at a smaller distance plus the earlier items
at its own. On CUDA, and for rankings by scores, torch does it: rankings by
Hamming distance sort small integers (numpy's O(N) radix sort on the CPU,
torch's stable sort on CUDA), queries in chunks so memory stays bounded.

Inputs may be numpy arrays or torch tensors; work happens on the device of the
CUDA tensor among them (CPU otherwise). Inputs are never modified.
"""
import functools
import types

import numpy as np
import torch

from utils import hamming_kernels

__all__ = [
    "hamming_distance",
    "mean_average_precision",
    "precision_at_k",
    "precision_recall_at_ranks",
    "map_within_radius",
    "precision_recall_by_radius",
    "ball_sizes",
]

# Query x database elements handled per chunk: bounds peak memory (a chunk holds a
# few arrays of this many int64 at most) while keeping per-chunk overhead small.
_CHUNK_ELEMENTS = {"cpu": 1 << 23, "cuda": 1 << 26}
# Counts and index-order rankings on the CPU from utils.hamming_kernels (False: the
# torch path everywhere, as on CUDA; the tests run both).
_COMPILED = True
# Query x label-group relevance entries per compiled call (bool): bounds its memory.
_RELEVANCE_ELEMENTS = 1 << 24


# --------------------------------------------------------------------------- inputs

def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _tensor(x, name):
    """A tensor view of `x` (no copy where possible; callers never write into it)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    a = np.asarray(x)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if not a.flags.writeable or any(s < 0 for s in a.strides):
        a = a.copy()  # torch cannot wrap read-only or negatively strided memory
    return torch.from_numpy(a)


def _numpy(t):
    """A numpy view of a CPU tensor; half-precision floats (which numba lacks) become float32."""
    return (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy()


def _device(*tensors):
    cuda = {t.device for t in tensors if t is not None and t.device.type != "cpu"}
    if len(cuda) > 1:
        raise ValueError(f"inputs are on several devices {sorted(map(str, cuda))}; put them on one")
    return cuda.pop() if cuda else torch.device("cpu")


def _codes(query_codes, db_codes):
    q, db = _tensor(query_codes, "query_codes"), _tensor(db_codes, "db_codes")
    for t, name in ((q, "query_codes"), (db, "db_codes")):
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D (items x bits), got shape {tuple(t.shape)}")
        if t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"{name} must hold +-1 values, got dtype {t.dtype}")
        signs = hamming_kernels.all_signs(_numpy(t)) if t.device.type == "cpu" else ((t == 1) | (t == -1)).all()
        if not signs:
            raise ValueError(f"{name} must hold only -1 and +1 (apply sign() and map 0 to +1 first)")
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"code lengths differ: queries have {q.shape[1]} bits, database {db.shape[1]}")
    if q.shape[0] == 0 or db.shape[0] == 0:
        raise ValueError(f"need at least one query and one database item, got {q.shape[0]} and {db.shape[0]}")
    return q, db


def _labels(query_labels, db_labels, n_query, n_db):
    ql, dl = _tensor(query_labels, "query_labels"), _tensor(db_labels, "db_labels")
    if ql.dim() != dl.dim() or ql.dim() not in (1, 2):
        raise ValueError("labels must be both (n,) class ids or both (n, C) multi-hot rows, got shapes "
                         f"{tuple(ql.shape)} and {tuple(dl.shape)}")
    for t, n, name in ((ql, n_query, "query_labels"), (dl, n_db, "db_labels")):
        if t.shape[0] != n:
            raise ValueError(f"{name} has {t.shape[0]} rows but there are {n} codes")
    if ql.dim() == 1:
        if ql.is_floating_point() or ql.dtype == torch.bool or dl.is_floating_point() or dl.dtype == torch.bool:
            raise ValueError("class-id labels must be integers")
    else:
        if ql.shape[1] != dl.shape[1]:
            raise ValueError(f"label widths differ: queries have {ql.shape[1]} columns, database {dl.shape[1]}")
        for t, name in ((ql, "query_labels"), (dl, "db_labels")):
            if not ((t == 0) | (t == 1)).all():
                raise ValueError(f"{name}: multi-hot labels must hold only 0 and 1")
    return ql, dl


def _scores(query_scores, db_scores, n_query, n_db):
    if (query_scores is None) != (db_scores is None):
        raise ValueError("give both query_scores and db_scores, or neither")
    if query_scores is None:
        return None, None
    qs, ds = _tensor(query_scores, "query_scores"), _tensor(db_scores, "db_scores")
    if qs.dim() != 2 or ds.dim() != 2 or qs.shape[1] != ds.shape[1]:
        raise ValueError(f"scores must be (Q, D) and (N, D), got {tuple(qs.shape)} and {tuple(ds.shape)}")
    if qs.shape[0] != n_query or ds.shape[0] != n_db:
        raise ValueError(f"scores have {qs.shape[0]} and {ds.shape[0]} rows, codes {n_query} and {n_db}")
    if not (torch.isfinite(qs).all() and torch.isfinite(ds).all()):
        raise ValueError("scores must be finite (no NaN or inf)")
    return qs, ds


# ------------------------------------------------------------------ the problem

def _pack(x):
    """Rows of a +-1 or 0/1 matrix as integers: N x ceil(K/62) int64 (bit k of word w = column 62w+k).

    Integer shifts, not a float product with powers of two: that is exact on the CPU
    but was not on a CUDA device.
    """
    bits = (x > 0).long()
    shifts = torch.arange(62, device=x.device)
    words = [(bits[:, s:s + 62] << shifts[:min(62, bits.shape[1] - s)]).sum(1) for s in range(0, bits.shape[1], 62)]
    return torch.stack(words, 1)


def _row_ids(x):
    """Integer id per row of a +-1 or 0/1 matrix; equal rows get equal ids, 0..(distinct rows - 1)."""
    packed = _pack(x)
    if packed.shape[1] == 1:
        return torch.unique(packed[:, 0], return_inverse=True)[1]
    return torch.unique(packed, dim=0, return_inverse=True)[1]


def _first_of(ids, n_ids):
    """Index of the first row carrying each id."""
    first = torch.full((n_ids,), ids.numel(), dtype=torch.long, device=ids.device)
    return first.scatter_reduce_(0, ids, torch.arange(ids.numel(), device=ids.device), "amin")


def _distance_table(hist, bits):
    """T[g, x, d] = items of label group g at Hamming distance d from code x, for all 2^K codes x.

    hist: G x 2^K item counts per (group, code). One pass per bit: after bits 0..b-1,
    T[g, x, d] counts items that agree with x on bits >= b and differ in d of the
    bits below b; bit b then adds the items of code x ^ 2^b one distance further.
    """
    table = torch.zeros(*hist.shape, bits + 1, dtype=torch.float64, device=hist.device)
    table[..., 0] = hist
    for b in range(bits):
        pair = table.view(hist.shape[0], -1, 2, 2 ** b, bits + 1)  # bit b of x is axis 2
        low, high = pair[:, :, 0].clone(), pair[:, :, 1].clone()
        pair[:, :, 0, :, 1:] += high[..., :-1]
        pair[:, :, 1, :, 1:] += low[..., :-1]
    return table


def _use_table(bits, n_groups, n_query, n_cells):
    """Whether per-distance counts come from a 2^K distance table rather than Q x cells work.

    The table costs about K * G * 2^K * (K+1) additions once; the direct way about
    4 passes over Q x cells. The table must stay small (2^24 float64 at most), and so
    must each query's G x (K+1) slice of it.
    """
    size = n_groups * 2 ** min(bits, 63) * (bits + 1)
    return bits <= 16 and n_groups * (bits + 1) <= 2048 and size <= 1 << 24 and size * bits < 4 * n_query * n_cells


class _Problem:
    """Validated inputs; per-distance counts and index-order rankings of the queries.

    On the CPU these come from compiled passes (_Compiled); on a CUDA device, and for
    rankings by scores, from torch over cells of equal (code, label set).
    """

    def __init__(self, query_codes, db_codes, query_labels, db_labels, query_scores=None, db_scores=None):
        q, db = _codes(query_codes, db_codes)
        ql, dl = _labels(query_labels, db_labels, q.shape[0], db.shape[0])
        qs, ds = _scores(query_scores, db_scores, q.shape[0], db.shape[0])
        dev = self.device = _device(q, db, ql, dl, qs, ds)
        self.n_query, self.bits = q.shape
        self.n_db = db.shape[0]
        # Products of +-1 codes are small integers: exact in bfloat16 (8 significant bits)
        # below 256 bits, where it is several times faster than float32 on the CPU.
        self.code_dtype = torch.bfloat16 if self.bits < 256 else torch.float32
        self.dist_dtype = torch.uint8 if self.bits < 256 else torch.int16  # what numpy radix-sorts
        self.query_codes = q.to(dev)
        self.query_scores = None if qs is None else qs.to(dev, torch.float32)
        self.db_scores = None if ds is None else ds.to(dev, torch.float32)
        self._inputs = db.to(dev), ql.to(dev), dl.to(dev)
        self.compiled = _Compiled(q, db, ql, dl) if dev.type == "cpu" and _COMPILED else None

    @functools.cached_property
    def grouped(self):
        """The torch path's database: label groups and cells of equal (code, label group)."""
        db, ql, dl = self._inputs
        g = types.SimpleNamespace()
        if dl.dim() == 1:  # label groups: distinct class ids, or distinct multi-hot rows
            g.group_labels, group = torch.unique(dl, return_inverse=True)  # G, N
            g.query_labels = ql
        else:
            group = _row_ids(dl)
            g.group_labels = dl[_first_of(group, int(group.max()) + 1)].to(torch.float32)  # G x C
            g.query_labels = ql.to(torch.float32)
        n_groups = g.group_labels.shape[0]

        cell = torch.unique(_row_ids(db) * n_groups + group, return_inverse=True)[1]  # N
        n_cells = int(cell.max()) + 1
        first = _first_of(cell, n_cells)
        g.cell_codes = db[first].to(self.code_dtype)  # U x K
        g.cell_group = group[first]  # U
        g.cell_counts = torch.bincount(cell, minlength=n_cells).to(torch.float64)  # U
        # Where most items are alone in their cell, look distances up per item directly.
        g.item_cell = cell if 2 * n_cells <= self.n_db else None
        if g.item_cell is None:
            g.cell_codes, g.cell_group = db.to(self.code_dtype), group
            g.cell_counts = torch.ones(self.n_db, dtype=torch.float64, device=self.device)
        g.use_table = _use_table(self.bits, n_groups, self.n_query, n_cells)
        g.db, g.group = db, group  # for the table, built on first use
        return g

    @functools.cached_property
    def table(self):
        """2^K x G x (K+1) float64: items of each label group at each distance from every code."""
        g = self.grouped
        n_groups, n_codes = g.group_labels.shape[0], 2 ** self.bits
        hist = torch.bincount(g.group * n_codes + _pack(g.db)[:, 0], minlength=n_groups * n_codes)
        return _distance_table(hist.view(n_groups, n_codes).double(), self.bits).transpose(0, 1).contiguous()

    def chunks(self, torch_ranking=False):
        """Query slices: bounded Q x N work per slice for the torch path, one slice for compiled work.

        torch_ranking: the caller ranks by index with ranked_relevance (always torch).
        """
        if self.compiled is not None and self.query_scores is None and not torch_ranking:
            yield slice(0, self.n_query)  # the compiled passes hold O(Q x K) memory
            return
        size = max(1, _CHUNK_ELEMENTS.get(self.device.type, _CHUNK_ELEMENTS["cpu"]) // self.n_db)
        for start in range(0, self.n_query, size):
            yield slice(start, min(start + size, self.n_query))

    def group_relevance(self, rows):
        """Qc x G bool: does each query share a label with each label group (torch path)."""
        g = self.grouped
        if g.group_labels.dim() == 1:
            return g.query_labels[rows, None] == g.group_labels[None, :]
        return (g.query_labels[rows] @ g.group_labels.T) > 0

    def cells(self, rows):
        """Hamming distance (Qc x U) and relevance (Qc x U bool) of the queries to every cell (torch path)."""
        g = self.grouped
        q = self.query_codes[rows].to(self.code_dtype) * -0.5
        dist = (q @ g.cell_codes.T).add_(self.bits / 2).to(self.dist_dtype)  # (K - q.v) / 2, exact
        rel = self.group_relevance(rows)
        return dist, rel.gather(1, g.cell_group.expand(rel.shape[0], -1))

    def bucket_counts(self, rows, dist=None, rel=None):
        """Items n and relevant items r at each distance 0..K: two Qc x (K+1) float64 tensors.

        dist, rel: the torch path's cells(rows), when the caller has them already.
        """
        if self.compiled is not None:
            return self.compiled.bucket_counts(rows)
        g = self.grouped
        if g.use_table:
            per_group = self.table[_pack(self.query_codes[rows])[:, 0]]  # Qc x G x (K+1)
            relevant = self.group_relevance(rows).unsqueeze(2)  # Qc x G x 1
            return per_group.sum(1), (per_group * relevant).sum(1)
        if dist is None:
            dist, rel = self.cells(rows)
        index = dist.long()
        counts = g.cell_counts.expand_as(index)
        n = torch.zeros(dist.shape[0], self.bits + 1, dtype=torch.float64, device=self.device)
        r = torch.zeros_like(n)
        return n.scatter_add_(1, index, counts), r.scatter_add_(1, index, counts * rel)

    def precision_sums(self, rows, length, dist=None, rel=None, radius=None):
        """Sum of precision at the relevant ranks among the first `length` ranks, and their count (Qc each).

        length: an int for every query, or a Qc int64 tensor (one per query);
        dist, rel, radius: as in ranked_relevance (dist, rel computed when not given).
        """
        if self.compiled is not None and self.query_scores is None:
            return self.compiled.index_precision_sums(rows, length)
        if dist is None:
            dist, rel = self.cells(rows)
        longest = length if isinstance(length, int) else max(int(length.max()), 1)
        ranked = self.ranked_relevance(rows, dist, rel, longest, radius)
        return _precision_sums(ranked, None if isinstance(length, int) else length)

    def ranked_relevance(self, rows, dist, rel, length, radius=None):
        """Relevance of the first `length` items of each query's ranking (Qc x length bool), torch path.

        Ranking: by (distance, index), or by (-score, index) when scores are given;
        with `radius`, items farther than it are ranked after every item inside.
        """
        item_cell = self.grouped.item_cell
        if item_cell is not None:  # cell -> item columns, Qc x U -> Qc x N
            index = item_cell.expand(dist.shape[0], -1)
            dist, rel = dist.gather(1, index), rel.gather(1, index)
        if self.query_scores is None:
            order = _stable_argsort(dist)[:, :length]
        else:
            scores = self.query_scores[rows] @ self.db_scores.T  # Qc x N
            if radius is not None:
                scores = scores.masked_fill(dist > radius, float("-inf"))
            order = _top_by_score(scores, length)
        return rel.gather(1, order)


def _use_distance_table(bits, n_query, n_cells):
    """Whether the compiled counts of all items come from a 2^K x (K+1) table rather than a scan.

    The table costs about K^2 2^(K-1) additions once, the scan Q x cells; the table
    needs one-word codes and stays within 2^16 x 17 int64 (9 MB).
    """
    return bits <= 16 and bits ** 2 << max(bits - 1, 0) < n_query * n_cells


class _Compiled:
    """The CPU path: packed codes, label groups and cells for utils.hamming_kernels.

    Queries with the same code and label set have the same counts and ranking, so
    each distinct one is computed once.
    """

    def __init__(self, q, db, ql, dl):
        q, db, ql, dl = map(_numpy, (q, db, ql, dl))
        self.bits, self.n_db = q.shape[1], db.shape[0]
        self.db_words = hamming_kernels.pack_rows(db)  # N x W uint64
        self.db_group, self._group_values, query_keys = _label_groups(ql, dl)
        query_words = hamming_kernels.pack_rows(q)  # Q x W
        _, first, inverse = np.unique(np.concatenate([query_words.view(np.int64), query_keys], 1), axis=0,
                                      return_index=True, return_inverse=True)
        self.inverse = inverse.reshape(-1)  # Q: distinct query of each query
        self.query_words, self.query_keys = query_words[first], query_keys[first]  # Qd x W, Qd x L
        self.cells = _code_cells(self.db_words, self.db_group, len(self._group_values), self.bits)
        words, _, counts = self.cells
        if _use_distance_table(self.bits, len(self.query_words), len(counts)):
            self.table = hamming_kernels.distance_table(words, counts, self.bits)
        else:
            self.table = np.zeros((0, self.bits + 1), np.int64)

    def _relevance(self, distinct):
        """Qd' x G bool: does each of these distinct queries share a label with each group."""
        keys, values = self.query_keys[distinct], self._group_values
        if values.ndim == 1:  # class ids
            return keys[:, :1] == values[None, :]
        rel = np.zeros((len(keys), len(values)), bool)
        for w in range(values.shape[1]):  # multi-hot rows, packed
            rel |= (keys[:, None, w] & values[None, :, w]) != 0
        return rel

    def _batches(self, distinct):
        """Slices of `distinct` whose relevance rows stay within _RELEVANCE_ELEMENTS."""
        size = max(1, _RELEVANCE_ELEMENTS // max(len(self._group_values), 1))
        for start in range(0, len(distinct), size):
            yield distinct[start:start + size]

    @functools.cached_property
    def counts(self):
        """n, r of every distinct query: two Qd x (K+1) float64 arrays."""
        out = [hamming_kernels.bucket_counts(self.query_words[d], self._relevance(d), *self.cells, self.table)
               for d in self._batches(np.arange(len(self.query_words)))]
        return np.concatenate([n for n, _ in out]), np.concatenate([r for _, r in out])

    def bucket_counts(self, rows):
        n, r = self.counts
        index = self.inverse[rows]
        return torch.from_numpy(n[index]), torch.from_numpy(r[index])

    def index_precision_sums(self, rows, length):
        """Sums and counts (Qc float64 tensors) over the first `length` ranks by (distance, index)."""
        distinct, back = np.unique(self.inverse[rows], return_inverse=True)
        lengths = np.empty(len(distinct), np.int64)
        lengths[back.reshape(-1)] = length if isinstance(length, int) else length.numpy()
        n, r = self.counts
        sums, hits = [], []
        for at in self._batches(np.arange(len(distinct))):
            d = distinct[at]
            s, h = hamming_kernels.index_precision_sums(self.query_words[d], self._relevance(d), self.db_words,
                                                        self.db_group, n[d], r[d], lengths[at])
            sums.append(s)
            hits.append(h)
        back = back.reshape(-1)
        return torch.from_numpy(np.concatenate(sums)[back]), torch.from_numpy(np.concatenate(hits)[back] * 1.0)


def _label_groups(ql, dl):
    """Label groups of the database: group id per item (N int64), the groups' labels, and query keys.

    Class ids: groups are ids (G) and keys the query ids (Q x 1). Multi-hot rows:
    groups are the distinct packed rows (G x L uint64 viewed as int64), keys the
    packed query rows (Q x L). Equal keys mean equal relevance to every group.
    """
    if dl.ndim == 1:
        dl, ql = dl.astype(np.int64), ql.astype(np.int64)
        low, high = int(dl.min()), int(dl.max())
        if high - low < 4 * len(dl) + 1024:  # ids in a small range: every value a group, no sort
            values, group = np.arange(low, high + 1), dl - low
        else:
            values, group = np.unique(dl, return_inverse=True)
        return group.reshape(-1), values, ql[:, None]
    words = hamming_kernels.pack_rows(dl).view(np.int64)  # N x L
    if words.shape[1] == 1:
        values, group = np.unique(words[:, 0], return_inverse=True)
        values = values[:, None]
    else:
        values, group = np.unique(words, axis=0, return_inverse=True)
    return group.reshape(-1), values, hamming_kernels.pack_rows(ql).view(np.int64)


def _code_cells(words, group, n_groups, bits):
    """Database items grouped by equal (code, label group), sorted by group.

    Returns words U x W, group_start G+1 (the cells of group g are
    group_start[g]:group_start[g + 1]) and count U (int64). With one code word,
    (group, code) packs into one integer: counted densely when the key space is
    small, else by a sort; wider codes keep one cell per item.
    """
    if words.shape[1] > 1 or bits + max(n_groups - 1, 1).bit_length() > 63:
        order = np.argsort(group, kind="stable")
        words, group, counts = words[order], group[order], np.ones(len(group), np.int64)
    else:
        key = (group.astype(np.uint64) << np.uint64(bits)) | words[:, 0]  # N
        if n_groups << bits <= 1 << 20:
            counts = np.bincount(key.astype(np.int64), minlength=n_groups << bits)
            key = np.flatnonzero(counts).astype(np.uint64)
            counts = counts[key.astype(np.int64)]
        else:
            key, counts = np.unique(key, return_counts=True)
        words = np.ascontiguousarray((key & np.uint64((1 << bits) - 1))[:, None])
        group = (key >> np.uint64(bits)).astype(np.int64)
    group_start = np.searchsorted(group, np.arange(n_groups + 1))
    return words, group_start, counts.astype(np.int64)


def _stable_argsort(keys):
    """Row-wise stable ascending argsort of small integers (Qc x N -> int64)."""
    if keys.device.type == "cpu":
        # numpy sorts 8/16-bit integers with a stable O(N) radix sort; torch's CPU sort
        # is a comparison sort, about 9x slower here.
        return torch.from_numpy(np.argsort(keys.numpy(), axis=1, kind="stable"))
    return torch.sort(keys, dim=1, stable=True).indices


def _top_by_score(scores, length):
    """Indices of the `length` largest scores per row, ordered by (-score, index)."""
    n = scores.shape[1]
    if length < n:
        # Select first (O(N) per row), then sort only the selection. Among items equal
        # to the cut-off value, the ones with the smallest indices are kept.
        cut = torch.topk(scores, length, dim=1, sorted=False).values.min(1, keepdim=True).values  # Qc x 1
        above = scores > cut
        at = scores == cut
        room = length - above.sum(1, keepdim=True)
        keep = above | (at & (at.cumsum(1) <= room))
        index = keep.nonzero()[:, 1].view(-1, length)  # ascending database index per row
        scores = scores.gather(1, index)
    else:
        index = None
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return order if index is None else index.gather(1, order)


def _precision_sums(ranked, cutoff=None):
    """Sum over relevant ranks t of (relevant up to t) / t, and the relevant count, per row.

    `ranked` is Qc x L relevance in ranking order; `cutoff` (Qc,) keeps only the
    first cutoff[i] ranks of row i.
    """
    rows, pos = ranked.nonzero(as_tuple=True)  # row-major, so ranks ascend within a row
    if cutoff is not None:
        keep = pos < cutoff[rows]
        rows, pos = rows[keep], pos[keep]
    hits = torch.bincount(rows, minlength=ranked.shape[0])  # Qc
    start = hits.cumsum(0) - hits
    hit_rank = torch.arange(rows.numel(), device=rows.device) - start[rows] + 1
    sums = torch.zeros(ranked.shape[0], dtype=torch.float64, device=ranked.device)
    sums.index_add_(0, rows, hit_rank.double() / (pos + 1).double())
    return sums, hits.double()


def _harmonic(n, device):
    """H[i] = sum_{j<=i} 1/j for i = 0..n, float64.

    On the CPU numpy builds it on one thread: torch would start its thread pool for
    this small job, which costs more than the job on a 2-core CPU.
    """
    if device.type == "cpu":
        h = np.zeros(n + 1)
        np.cumsum(1.0 / np.arange(1, n + 1), out=h[1:])
        return torch.from_numpy(h)
    h = torch.zeros(n + 1, dtype=torch.float64, device=device)
    h[1:] = (1.0 / torch.arange(1, n + 1, dtype=torch.float64, device=device)).cumsum(0)
    return h


def _expected_precision_sums(n, r, harmonic):
    """E[sum over relevant ranks of precision] when ties are in uniformly random order.

    For a distance bucket with n items (r relevant) behind a items (b relevant), the
    relevant item at bucket position t has, in expectation, 1 + (t-1)(r-1)/(n-1)
    relevant items among the bucket's first t (hypergeometric), so the bucket adds
    (r/n) sum_{t=1..n} (b + 1 + (t-1) beta) / (a + t), beta = (r-1)/(n-1), which
    is n beta + (b + 1 - beta - beta a) (H[a+n] - H[a]) in closed form.
    """
    a = n.cumsum(1) - n  # Qc x (K+1) items strictly closer
    b = r.cumsum(1) - r
    beta = torch.where(n > 1, (r - 1) / (n - 1).clamp(min=1), torch.zeros_like(n))
    dh = harmonic[(a + n).long()] - harmonic[a.long()]
    per_bucket = r / n.clamp(min=1) * (n * beta + (b + 1 - beta - beta * a) * dh)
    return per_bucket.sum(1)


def _counts_in_first(k, n, r):
    """Items and expected relevant items in the first k ranks under random tie order.

    k: Qc x R ranks (1 <= k <= N); n, r: Qc x (K+1) bucket counts. Returns Qc x R.
    """
    cum_n, cum_r = n.cumsum(1), r.cumsum(1)
    bucket = torch.searchsorted(cum_n, k.double())  # first bucket reaching rank k
    before_n = cum_n.gather(1, bucket) - n.gather(1, bucket)
    before_r = cum_r.gather(1, bucket) - r.gather(1, bucket)
    share = r.gather(1, bucket) / n.gather(1, bucket).clamp(min=1)
    return before_r + (k - before_n) * share


class _Mean:
    """Mean over queries where some queries may be left out."""

    def __init__(self):
        self.total, self.count = 0.0, 0

    def add(self, values, include):
        self.total += float(values[include].sum())
        self.count += int(include.sum())

    def value(self):
        return self.total / self.count if self.count else 0.0


# ----------------------------------------------------------------------- public API

def hamming_distance(query_codes, db_codes):
    """Hamming distances d = (K - q.v) / 2 as a Q x N int32 numpy array."""
    q, db = _codes(query_codes, db_codes)
    dev = _device(q, db)
    q, db = q.to(dev, torch.float32), db.to(dev, torch.float32)
    return ((q.shape[1] - q @ db.T) / 2).round().to(torch.int32).cpu().numpy()


def ball_sizes(query_codes, db_codes, radius):
    """Database items within Hamming distance `radius` of each query: a (Q,) int64 numpy array.

    MAP@H<=r alone cannot tell codes collapsed into one ball (every ball holds the whole
    database) from codes spread so far apart that the balls are empty; these counts can."""
    q, db = _codes(query_codes, db_codes)
    rows = max(1, _CHUNK_ELEMENTS["cpu"] // db.shape[0])  # bounds the Q x N distance block
    return np.concatenate([(hamming_distance(q[i:i + rows], db) <= radius).sum(1, dtype=np.int64)
                           for i in range(0, q.shape[0], rows)])


def mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=None, empty="zero",
                           ties="index", query_scores=None, db_scores=None):
    """Mean average precision of Hamming ranking.

    topk=None: the whole ranking, AP normalised by all relevant items (MAH/ADSH).
    topk=k: the first k ranks, AP normalised by the relevant items among them (HashNet).
    empty: a query with no relevant item (in the top k) counts 0 ("zero") or is
    left out of the mean ("skip"); 0.0 if every query is left out.
    ties: "index" (equal distances in database index order) or "expected" (exact
    expected AP over random orders of equal distances; topk=None, no scores).
    query_scores / db_scores: rank by q.v of these instead of Hamming distance.
    """
    _choice("empty", empty, ("zero", "skip"))
    _choice("ties", ties, ("index", "expected"))
    if topk is not None:
        topk = _positive_int("topk", topk)
    if ties == "expected" and topk is not None:
        raise ValueError('ties="expected" is supported for the whole ranking only (topk=None)')
    if ties == "expected" and query_scores is not None:
        raise ValueError('ties="expected" ranks by Hamming distance; it cannot be combined with scores')
    p = _Problem(query_codes, db_codes, query_labels, db_labels, query_scores, db_scores)
    length = p.n_db if topk is None else min(topk, p.n_db)
    harmonic = _harmonic(p.n_db, p.device) if ties == "expected" else None
    mean = _Mean()
    for rows in p.chunks():
        if ties == "expected":
            n, r = p.bucket_counts(rows)
            sums, hits = _expected_precision_sums(n, r, harmonic), r.sum(1)
        else:
            sums, hits = p.precision_sums(rows, length)
        ap = sums / hits.clamp(min=1)
        mean.add(ap, (hits > 0) | (empty == "zero"))
    return mean.value()


def precision_recall_at_ranks(query_codes, db_codes, query_labels, db_labels, ranks, ties="index"):
    """Mean precision and recall over queries at each rank k in `ranks` (k > N uses N).

    Precision@k = relevant among the first k / k; recall@k = relevant among the
    first k / all relevant (0 for a query with none). ties="expected" gives the
    exact expectations over random orders of equal distances.
    Returns two numpy float64 arrays of len(ranks).
    """
    _choice("ties", ties, ("index", "expected"))
    ranks = [_positive_int("rank", k) for k in np.atleast_1d(ranks).tolist()]
    p = _Problem(query_codes, db_codes, query_labels, db_labels)
    ks = torch.tensor([min(k, p.n_db) for k in ranks], device=p.device)  # R
    precision = torch.zeros(len(ranks), dtype=torch.float64, device=p.device)
    recall = torch.zeros_like(precision)
    for rows in p.chunks(torch_ranking=ties == "index"):
        n, r = p.bucket_counts(rows)
        if ties == "expected":
            found = _counts_in_first(ks.expand(n.shape[0], -1), n, r)  # Qc x R
        else:
            ranked = p.ranked_relevance(rows, *p.cells(rows), int(ks.max()))
            found = ranked.cumsum(1, dtype=torch.float64)[:, ks - 1]  # Qc x R
        total = r.sum(1, keepdim=True)  # Qc x 1
        precision += (found / ks).sum(0)
        recall += torch.where(total > 0, found / total.clamp(min=1), 0).sum(0)
    return (precision / p.n_query).cpu().numpy(), (recall / p.n_query).cpu().numpy()


def precision_at_k(query_codes, db_codes, query_labels, db_labels, k, ties="index"):
    """Mean over queries of (relevant among the first k) / k; k > N uses N."""
    precision, _ = precision_recall_at_ranks(query_codes, db_codes, query_labels, db_labels, [k], ties)
    return float(precision[0])


def map_within_radius(query_codes, db_codes, query_labels, db_labels, radius=2, query_scores=None,
                      db_scores=None, empty_ball="zero", no_relevant="skip", pr_average="all"):
    """MAP, precision and recall of the items within Hamming radius (d <= radius).

    Inside the ball items are ranked by query_scores . db_scores (larger first,
    equal scores by index) when given, else by (distance, index); AP is normalised
    by the relevant items in the ball. empty_ball / no_relevant: whether a query
    whose ball is empty / holds no relevant item counts AP 0 ("zero") or is left
    out of the mean map ("skip"). Per query, precision = relevant in the ball / ball
    size (0 for an empty ball) and recall = relevant in the ball / all relevant (0 for
    a query with no relevant item at all, where the released MMHH code divided by
    zero); pr_average: their mean over all queries ("all") or over the queries with
    a non-empty ball only ("nonempty"; 0.0 when every ball is empty).
    Defaults are DeepHash's and the released MMHH code's default metric; its
    "optimised" one (--opt-test) is empty_ball="skip", no_relevant="zero",
    pr_average="nonempty". For radius >= 10 that default metric reported the ball's
    precision as "MAP" (it skipped the ranking there); this function always returns
    the MAP defined above.
    Returns {"map", "precision", "recall"} as floats.
    """
    _choice("empty_ball", empty_ball, ("zero", "skip"))
    _choice("no_relevant", no_relevant, ("zero", "skip"))
    _choice("pr_average", pr_average, ("all", "nonempty"))
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    p = _Problem(query_codes, db_codes, query_labels, db_labels, query_scores, db_scores)
    radius = min(int(radius), p.bits)
    mean, precision, recall = _Mean(), _Mean(), _Mean()
    for rows in p.chunks():
        dist, rel = (None, None) if p.compiled is not None else p.cells(rows)
        n, r = p.bucket_counts(rows, dist, rel)
        ball, found = n[:, :radius + 1].sum(1), r[:, :radius + 1].sum(1)  # Qc
        total = r.sum(1)
        counted = (ball > 0) | (pr_average == "all")  # Qc bool: queries in the precision and recall means
        precision.add(found / ball.clamp(min=1), counted)
        recall.add(found / total.clamp(min=1), counted)
        sums, hits = p.precision_sums(rows, ball.long(), dist, rel, radius)
        include = torch.where(ball == 0, empty_ball == "zero", (hits > 0) | (no_relevant == "zero"))
        mean.add(sums / hits.clamp(min=1), include)
    return {"map": mean.value(), "precision": precision.value(), "recall": recall.value()}


def precision_recall_by_radius(query_codes, db_codes, query_labels, db_labels):
    """Mean precision and recall of the ball d <= r for every radius r = 0..K.

    Same conventions as map_within_radius. Returns two numpy float64 arrays of K + 1.
    """
    p = _Problem(query_codes, db_codes, query_labels, db_labels)
    precision = torch.zeros(p.bits + 1, dtype=torch.float64, device=p.device)
    recall = torch.zeros_like(precision)
    for rows in p.chunks():
        n, r = p.bucket_counts(rows)
        ball, found = n.cumsum(1), r.cumsum(1)  # Qc x (K+1)
        total = r.sum(1, keepdim=True)
        precision += (found / ball.clamp(min=1)).sum(0)
        recall += (found / total.clamp(min=1)).sum(0)
    return (precision / p.n_query).cpu().numpy(), (recall / p.n_query).cpu().numpy()
