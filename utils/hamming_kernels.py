"""Compiled per-query passes over a database of packed binary codes (CPU, numba).

utils.metrics uses these on the CPU; on a CUDA device it keeps its torch path.
Codes are packed 64 bits to a word (pack_rows), and relevance is looked up per
label group: rel[i, g] says whether query i shares a label with group g.

Two passes, both O(database) per query with O(1) work per item and no sort:
- bucket_counts: items n[d] and relevant items r[d] at each Hamming distance d,
  over weighted "cells" (database items that share a code and a label group);
- index_precision_sums: AP's numerator when equal distances are ranked in
  database index order. An item's rank is known without sorting: items at a
  smaller distance (prefix sums of n) plus the earlier items at its distance
  (a running count), which is what a stable sort by distance would give.

Threads. The two passes run on numba's own thread pool ("workqueue"), not its OpenMP
layer: starting that layer sets the OpenMP thread count of the whole process, which is
torch's too, so training after the first evaluation would run on threads the user did
not ask for. They use as many threads as torch does (torch.get_num_threads(): what
OMP_NUM_THREADS or torch.set_num_threads chose), unless NUMBA_NUM_THREADS says otherwise.
"""
import os

import numba
import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import intrinsic

if "NUMBA_THREADING_LAYER" not in os.environ:  # a layer the user chose is kept
    numba.config.THREADING_LAYER = "workqueue"


def thread_count():
    """The threads the parallel passes use: NUMBA_NUM_THREADS when set, else torch's count
    (within numba's pool)."""
    if "NUMBA_NUM_THREADS" in os.environ:
        return numba.config.NUMBA_NUM_THREADS
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def _follow_torch_threads():
    numba.set_num_threads(thread_count())


@intrinsic
def _popcount(typingctx, word):
    """Set bits of a uint64 (LLVM's ctpop: the popcnt instruction where the CPU has it)."""
    if word != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


def pack_rows(x):
    """Rows of a numeric matrix as bits (x > 0), 64 to a uint64 word: N x ceil(C/64), bit k of word w = column 64w+k."""
    out = np.zeros((x.shape[0], (x.shape[1] + 63) // 64), np.uint64)
    _pack_into(x, out)
    return out


@njit(cache=True)  # one thread: too little work per item to pay for waking a second one
def _pack_into(x, out):
    for i in range(x.shape[0]):
        for w in range(out.shape[1]):
            word = np.uint64(0)
            for k in range(64 * w, min(64 * w + 64, x.shape[1])):
                if x[i, k] > 0:
                    word |= np.uint64(1) << np.uint64(k - 64 * w)
            out[i, w] = word


@njit(cache=True)
def all_signs(x):
    """Whether every entry of an array is -1 or +1."""
    flat = x.ravel()
    bad = 0
    for j in range(flat.size):  # no branch in the loop: it vectorises
        bad += (flat[j] != 1) & (flat[j] != -1)
    return bad == 0


# Queries handled together in one pass over the database: each item is loaded once for
# all of them, and their running counts form independent dependency chains.
_BLOCK = 4


@njit(inline="always")
def _distance(words, k, item_words, j):
    """Hamming distance between row k of words and row j of item_words (int64)."""
    if words.shape[1] == 1:  # codes up to 64 bits: no inner loop
        return np.int64(_popcount(words[k, 0] ^ item_words[j, 0]))
    d = np.int64(0)
    for w in range(words.shape[1]):
        d += np.int64(_popcount(words[k, w] ^ item_words[j, w]))
    return d


@njit(inline="always")
def _block(n_query, b):
    """Query indices of block b (the last block repeats its last query to fill up)."""
    rows = np.empty(_BLOCK, np.int64)
    for k in range(_BLOCK):
        rows[k] = min(b * _BLOCK + k, n_query - 1)
    return rows


@njit(cache=True)
def distance_table(cell_words, cell_count, bits):
    """2^K x (K+1) int64: T[x, d] = items at Hamming distance d from code x (one-word codes, small K).

    One pass per bit b: after bits 0..b-1, T[x, d] counts the items that agree with
    x on bits >= b and differ in d of the bits below; then the items of x ^ 2^b join
    one distance further. About K^2 2^(K-1) additions, against Q x cells for a scan.
    """
    table = np.zeros((1 << bits, bits + 1), np.int64)
    for c in range(cell_words.shape[0]):
        table[cell_words[c, 0], 0] += cell_count[c]
    for b in range(bits):
        step = 1 << b
        for x in range(1 << bits):
            if x & step:
                continue
            y = x | step
            for d in range(b + 1, 0, -1):  # descending: column d - 1 still holds the values before bit b
                table[x, d], table[y, d] = table[x, d] + table[y, d - 1], table[y, d] + table[x, d - 1]
    return table


def bucket_counts(*args):
    """_bucket_counts on the threads torch uses (see the module's note)."""
    _follow_torch_threads()
    return _bucket_counts(*args)


def index_precision_sums(*args):
    """_index_precision_sums on the threads torch uses (see the module's note)."""
    _follow_torch_threads()
    return _index_precision_sums(*args)


@njit(parallel=True, cache=True)
def _bucket_counts(query_words, rel, cell_words, group_start, cell_count, table):
    """n, r: Q x (K+1) float64, items and relevant items at each distance from each query.

    query_words: Q x W uint64; rel: Q x G bool; cell_words: U x W uint64, cells
    sorted by label group, those of group g at group_start[g]:group_start[g + 1];
    cell_count: U int64 items per cell; table: distance_table of the cells, whose
    rows give n directly, or an empty 0 x (K+1) array (n from a scan of the cells).
    Relevant counts scan only the cells of the groups each query is relevant to.
    """
    n_query, width = query_words.shape[0], table.shape[1]
    n = np.zeros((n_query, width))
    r = np.zeros((n_query, width))
    for b in prange((n_query + _BLOCK - 1) // _BLOCK):
        rows = _block(n_query, b)
        words, rel_b = query_words[rows], rel[rows]  # BLOCK x W, BLOCK x G: local copies
        n_b = np.zeros((_BLOCK, width), np.int64)  # per-thread accumulators
        r_b = np.zeros((_BLOCK, width), np.int64)
        if table.shape[0]:
            for k in range(_BLOCK):
                n_b[k] = table[words[k, 0]]
        else:
            for c in range(cell_words.shape[0]):
                count = cell_count[c]
                for k in range(_BLOCK):
                    n_b[k, _distance(words, k, cell_words, c)] += count
        for k in range(_BLOCK):
            for g in range(len(group_start) - 1):
                if rel_b[k, g]:
                    for c in range(group_start[g], group_start[g + 1]):
                        r_b[k, _distance(words, k, cell_words, c)] += cell_count[c]
        for k in range(_BLOCK):
            n[rows[k]] = n_b[k]
            r[rows[k]] = r_b[k]
    return n, r


@njit(parallel=True, cache=True)
def _index_precision_sums(query_words, rel, item_words, item_group, n, r, length):
    """Sum of precision at the relevant ranks among the first length[i] ranks, and their count.

    Ranking by (distance, database index). n, r: Q x (K+1) bucket counts of the
    same queries (from bucket_counts); length: Q int64, 0 <= length[i] <= N.
    Returns sums (Q float64) and hits (Q int64).
    """
    n_query, width = query_words.shape[0], n.shape[1]
    sums = np.zeros(n_query)
    hits = np.zeros(n_query, np.int64)
    for b in prange((n_query + _BLOCK - 1) // _BLOCK):
        rows = _block(n_query, b)
        words, rel_b, limit = query_words[rows], rel[rows], length[rows]  # local copies
        # Ranks so far per distance: they start after every item at a smaller distance.
        ranked = np.zeros((_BLOCK, width), np.int64)
        ranked_relevant = np.zeros((_BLOCK, width), np.int64)
        for k in range(_BLOCK):
            for d in range(1, width):
                ranked[k, d] = ranked[k, d - 1] + np.int64(n[rows[k], d - 1])
                ranked_relevant[k, d] = ranked_relevant[k, d - 1] + np.int64(r[rows[k], d - 1])
        s = np.zeros(_BLOCK)
        h = np.zeros(_BLOCK, np.int64)
        for j in range(item_words.shape[0]):
            g = item_group[j]
            for k in range(_BLOCK):
                d = _distance(words, k, item_words, j)
                rank = ranked[k, d] + 1  # this item's rank
                if rank > limit[k]:
                    continue  # past the cut: so is every later item at this distance
                ranked[k, d] = rank
                if rel_b[k, g]:
                    found = ranked_relevant[k, d] + 1
                    ranked_relevant[k, d] = found
                    s[k] += found / rank
                    h[k] += 1
        for k in range(_BLOCK):
            sums[rows[k]], hits[rows[k]] = s[k], h[k]
    return sums, hits
