"""utils.metrics against slow, obviously-correct per-query references.

The references below rank with Python's stable `sorted` on explicit keys and
accumulate AP item by item; the data have few bits so that ties are everywhere.
"""
import itertools
import math

import numpy as np
import pytest
import torch

from utils import hamming_kernels, metrics


# ----------------------------------------------------------------------------- data

def random_case(seed, n_query=9, n_db=40, bits=4, multi=False, classes=3):
    rng = np.random.default_rng(seed)
    q = rng.choice([-1, 1], size=(n_query, bits))
    db = rng.choice([-1, 1], size=(n_db, bits))
    if multi:
        ql = (rng.random((n_query, classes)) < 0.3).astype(np.int64)
        dl = (rng.random((n_db, classes)) < 0.3).astype(np.int64)
        ql[0] = 0  # a query with no relevant item at all
    else:
        ql = rng.integers(0, classes + 1, n_query)  # class `classes` never occurs in the database
        dl = rng.integers(0, classes, n_db)
    return q, db, ql, dl


def integer_scores(seed, n, dim=3):
    """Real-valued scores on a coarse grid, so q.v ties often."""
    return np.random.default_rng(seed).integers(-2, 3, size=(n, dim)).astype(np.float64)


@pytest.fixture(autouse=True, params=["compiled-scan", "compiled-table", "direct", "table"])
def counts_path(request, monkeypatch):
    """Run every test on the CPU's compiled path and on the torch path (CUDA's), each with
    per-distance counts from a scan of the database cells and from a 2^K distance table."""
    compiled = request.param.startswith("compiled")
    table = request.param.endswith("table")
    monkeypatch.setattr(metrics, "_COMPILED", compiled)
    name = "_use_distance_table" if compiled else "_use_table"
    monkeypatch.setattr(metrics, name, lambda bits, *args: table and bits <= 16)
    return request.param


CASES = [dict(bits=b, multi=m) for b in (2, 3, 4, 6) for m in (False, True)]


# ----------------------------------------------------------------------- references

def ref_relevant(ql, dl):
    if np.ndim(ql) == 0:
        return ql == dl
    return bool(np.any((ql > 0) & (dl > 0)))


def ref_hamming(a, b):
    return sum(int(x != y) for x, y in zip(a, b))


def ref_ranking(qi, q, db, qs=None, ds=None):
    """Database indices of query qi, by (distance, index) or (-score, index)."""
    if qs is None:
        key = [ref_hamming(q[qi], db[j]) for j in range(len(db))]
    else:
        key = [-float(np.dot(qs[qi], ds[j])) for j in range(len(db))]
    return sorted(range(len(db)), key=lambda j: (key[j], j))


def ref_ap(rel_sequence, normaliser):
    """Sum over relevant ranks of precision, divided by `normaliser`."""
    found, total = 0, 0.0
    for t, r in enumerate(rel_sequence, 1):
        if r:
            found += 1
            total += found / t
    return total / normaliser


def ref_map(q, db, ql, dl, topk=None, empty="zero", qs=None, ds=None):
    aps = []
    for i in range(len(q)):
        order = ref_ranking(i, q, db, qs, ds)
        rel = [ref_relevant(ql[i], dl[j]) for j in order]
        if topk is not None:
            rel = rel[:topk]
        if sum(rel) == 0:
            if empty == "zero":
                aps.append(0.0)
            continue
        aps.append(ref_ap(rel, sum(rel)))
    return float(np.mean(aps)) if aps else 0.0


def tie_groups(i, q, db):
    by_dist = {}
    for j in range(len(db)):
        by_dist.setdefault(ref_hamming(q[i], db[j]), []).append(j)
    return [by_dist[d] for d in sorted(by_dist)]


def ref_expected_ap_exact(i, q, db, ql, dl):
    """Average AP over every order of equal-distance items (tiny cases only)."""
    groups = tie_groups(i, q, db)
    total_rel = sum(ref_relevant(ql[i], dl[j]) for j in range(len(db)))
    if total_rel == 0:
        return 0.0
    aps = []
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = [j for p in perms for j in p]
        aps.append(ref_ap([ref_relevant(ql[i], dl[j]) for j in order], total_rel))
    return float(np.mean(aps))


def ref_ball(i, q, db, ql, dl, radius, qs=None, ds=None):
    order = [j for j in ref_ranking(i, q, db, qs, ds) if ref_hamming(q[i], db[j]) <= radius]
    return [ref_relevant(ql[i], dl[j]) for j in order]


# ---------------------------------------------------------------- hamming distance

def test_hamming_distance_counts_differing_bits():
    q, db, _, _ = random_case(0, bits=6)
    got = metrics.hamming_distance(q, db)
    want = [[ref_hamming(a, b) for b in db] for a in q]
    assert got.shape == (len(q), len(db)) and np.issubdtype(got.dtype, np.integer)
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------ MAP

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("empty", ["zero", "skip"])
def test_map_whole_ranking_matches_reference(case, empty):
    q, db, ql, dl = random_case(1, **case)
    got = metrics.mean_average_precision(q, db, ql, dl, empty=empty)
    assert got == pytest.approx(ref_map(q, db, ql, dl, empty=empty), abs=1e-12)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("topk", [1, 7, 40, 1000])
@pytest.mark.parametrize("empty", ["zero", "skip"])
def test_map_topk_matches_reference(case, topk, empty):
    q, db, ql, dl = random_case(2, **case)
    got = metrics.mean_average_precision(q, db, ql, dl, topk=topk, empty=empty)
    assert got == pytest.approx(ref_map(q, db, ql, dl, topk=topk, empty=empty), abs=1e-12)


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("topk", [None, 1, 5, 13, 100])
def test_map_ranked_by_scores_matches_reference(multi, topk):
    q, db, ql, dl = random_case(3, n_db=30, multi=multi)
    qs, ds = integer_scores(4, len(q)), integer_scores(5, len(db))
    got = metrics.mean_average_precision(q, db, ql, dl, topk=topk, query_scores=qs, db_scores=ds)
    assert got == pytest.approx(ref_map(q, db, ql, dl, topk=topk, qs=qs, ds=ds), abs=1e-12)


def test_map_long_codes_use_the_general_path():
    # 70 bits span two packed words; 300 bits need 16-bit distances.
    for bits in (70, 300):
        q, db, ql, dl = random_case(6, bits=bits, n_db=25)
        db[5:10] = db[0]  # some equal codes, hence ties
        got = metrics.mean_average_precision(q, db, ql, dl)
        assert got == pytest.approx(ref_map(q, db, ql, dl), abs=1e-12)


def test_map_hand_computed():
    q = np.array([[1, 1]])
    # item 0 at distance 0 relevant; items 1, 2 at distance 1, only item 2 relevant.
    db = np.array([[1, 1], [1, -1], [-1, 1]])
    ql, dl = np.array([0]), np.array([0, 1, 0])
    assert metrics.mean_average_precision(q, db, ql, dl) == pytest.approx((1 + 2 / 3) / 2)
    # expected: item 2 is second or third with probability 1/2 each
    assert metrics.mean_average_precision(q, db, ql, dl, ties="expected") == pytest.approx(
        (1 + 0.5 * 2 / 2 + 0.5 * 2 / 3) / 2)
    # two tied items, the second relevant: index order says 1/2, random order 3/4
    db2, dl2 = np.array([[1, 1], [1, 1]]), np.array([1, 0])
    assert metrics.mean_average_precision(q, db2, ql, dl2) == pytest.approx(0.5)
    assert metrics.mean_average_precision(q, db2, ql, dl2, ties="expected") == pytest.approx(0.75)
    assert metrics.precision_at_k(q, db2, ql, dl2, 1) == 0.0
    assert metrics.precision_at_k(q, db2, ql, dl2, 1, ties="expected") == pytest.approx(0.5)


def test_map_all_queries_skipped_is_zero():
    q, db, _, dl = random_case(7)
    ql = np.full(len(q), 99)
    assert metrics.mean_average_precision(q, db, ql, dl, empty="skip") == 0.0
    assert metrics.mean_average_precision(q, db, ql, dl, empty="skip", ties="expected") == 0.0


# ------------------------------------------------------------------ tie-aware AP

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("multi", [False, True])
def test_expected_ap_equals_average_over_all_tie_orders(seed, multi):
    q, db, ql, dl = random_case(10 + seed, n_query=4, n_db=7, bits=2, multi=multi)
    want = np.mean([ref_expected_ap_exact(i, q, db, ql, dl) for i in range(len(q))])
    got = metrics.mean_average_precision(q, db, ql, dl, ties="expected")
    assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("empty", ["zero", "skip"])
def test_expected_ap_against_monte_carlo(empty):
    q, db, ql, dl = random_case(20, n_query=6, n_db=300, bits=3)
    rng = np.random.default_rng(21)
    samples = 400
    per_sample = []
    for _ in range(samples):
        # A random tie order is a random permutation applied to the database.
        perm = rng.permutation(len(db))
        per_sample.append(metrics.mean_average_precision(q, db[perm], ql, dl[perm], empty=empty))
    mean, stderr = np.mean(per_sample), np.std(per_sample) / math.sqrt(samples)
    got = metrics.mean_average_precision(q, db, ql, dl, ties="expected", empty=empty)
    assert stderr > 0
    assert abs(got - mean) < 5 * stderr


def test_expected_precision_at_k_equals_average_over_tie_orders():
    q, db, ql, dl = random_case(30, n_query=3, n_db=7, bits=2)
    for k in (1, 3, 6):
        want = []
        for i in range(len(q)):
            groups = tie_groups(i, q, db)
            counts = [sum(ref_relevant(ql[i], dl[j]) for j in [j for p in perms for j in p][:k]) / k
                      for perms in itertools.product(*(itertools.permutations(g) for g in groups))]
            want.append(np.mean(counts))
        got = metrics.precision_at_k(q, db, ql, dl, k, ties="expected")
        assert got == pytest.approx(np.mean(want), abs=1e-12)


# --------------------------------------------------------- precision and recall at k

@pytest.mark.parametrize("case", CASES)
def test_precision_recall_at_ranks_match_reference(case):
    q, db, ql, dl = random_case(40, **case)
    ranks = [1, 5, 40, 55]  # 55 > N uses N
    precision, recall = metrics.precision_recall_at_ranks(q, db, ql, dl, ranks)
    for col, k in enumerate(ranks):
        p_want, r_want = [], []
        for i in range(len(q)):
            rel = [ref_relevant(ql[i], dl[j]) for j in ref_ranking(i, q, db)]
            kk = min(k, len(db))
            p_want.append(sum(rel[:kk]) / kk)
            r_want.append(sum(rel[:kk]) / sum(rel) if sum(rel) else 0.0)
        assert precision[col] == pytest.approx(np.mean(p_want), abs=1e-12)
        assert recall[col] == pytest.approx(np.mean(r_want), abs=1e-12)
        assert metrics.precision_at_k(q, db, ql, dl, k) == pytest.approx(np.mean(p_want), abs=1e-12)


def test_expected_precision_at_whole_database_is_exact():
    q, db, ql, dl = random_case(41)
    k = len(db)
    exact = metrics.precision_at_k(q, db, ql, dl, k)
    assert metrics.precision_at_k(q, db, ql, dl, k, ties="expected") == pytest.approx(exact, abs=1e-12)


# ------------------------------------------------------------------ MAP within radius

def ref_map_within_radius(q, db, ql, dl, radius, qs=None, ds=None, empty_ball="zero", no_relevant="skip",
                          pr_average="all"):
    aps, precision, recall = [], [], []
    for i in range(len(q)):
        rel = ref_ball(i, q, db, ql, dl, radius, qs, ds)
        total = sum(ref_relevant(ql[i], dl[j]) for j in range(len(db)))
        if rel or pr_average == "all":
            precision.append(sum(rel) / len(rel) if rel else 0.0)
            recall.append(sum(rel) / total if total else 0.0)
        if not rel:
            if empty_ball == "zero":
                aps.append(0.0)
        elif not any(rel):
            if no_relevant == "zero":
                aps.append(0.0)
        else:
            aps.append(ref_ap(rel, sum(rel)))
    return {"map": float(np.mean(aps)) if aps else 0.0, "precision": float(np.mean(precision)) if precision else 0.0,
            "recall": float(np.mean(recall)) if recall else 0.0}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("radius", [0, 1, 2])
@pytest.mark.parametrize("policy", [("zero", "skip"), ("skip", "zero"), ("zero", "zero"), ("skip", "skip")])
@pytest.mark.parametrize("scored", [False, True])
def test_map_within_radius_matches_reference(case, radius, policy, scored):
    q, db, ql, dl = random_case(50, n_db=25, **case)
    qs, ds = (integer_scores(51, len(q)), integer_scores(52, len(db))) if scored else (None, None)
    empty_ball, no_relevant = policy
    got = metrics.map_within_radius(q, db, ql, dl, radius, qs, ds, empty_ball=empty_ball, no_relevant=no_relevant)
    want = ref_map_within_radius(q, db, ql, dl, radius, qs, ds, empty_ball, no_relevant)
    assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 4, 6, 7])  # seeds whose data hold every kind of query (asserted)
@pytest.mark.parametrize("scored", [False, True])
@pytest.mark.parametrize("policy", [("zero", "skip", "all"), ("skip", "zero", "nonempty"),
                                    ("zero", "skip", "nonempty")])
def test_map_within_radius_pr_average_matches_a_naive_loop(seed, scored, policy):
    """pr_average="nonempty" (the released --opt-test metric) averages precision and recall
    over the queries with a non-empty ball only. Would catch: still dividing by all queries,
    letting empty balls into that mean, dropping balls without relevant items from it, or a
    NaN / left-out recall for a query that has no relevant item at all."""
    q, db, ql, dl = random_case(100 + seed, n_query=14, n_db=14, bits=6, multi=True)
    qs, ds = (integer_scores(200 + seed, len(q)), integer_scores(300 + seed, len(db))) if scored else (None, None)
    radius = 1
    balls = [ref_ball(i, q, db, ql, dl, radius) for i in range(len(q))]
    # the data hold every kind of query the conventions treat differently
    assert any(not b for b in balls), "no empty ball"
    assert any(b and not any(b) for b in balls), "no non-empty ball without relevant items"
    assert any(any(b) for b in balls), "no ball with relevant items"
    assert balls[0], "query 0 (no relevant item at all) should have a non-empty ball"
    empty_ball, no_relevant, pr_average = policy
    got = metrics.map_within_radius(q, db, ql, dl, radius, qs, ds, empty_ball=empty_ball, no_relevant=no_relevant,
                                    pr_average=pr_average)
    want = ref_map_within_radius(q, db, ql, dl, radius, qs, ds, empty_ball, no_relevant, pr_average)
    assert got == pytest.approx(want, abs=1e-12)
    assert all(math.isfinite(v) for v in got.values())


def test_map_within_radius_pr_average_all_balls_empty_is_zero():
    """Would catch 0 / 0 (NaN) in the means when no query has a non-empty ball."""
    q, db = np.array([[1, 1, 1, 1]]), np.array([[-1, -1, -1, -1]])
    got = metrics.map_within_radius(q, db, [0], [0], radius=1, empty_ball="skip", pr_average="nonempty")
    assert got == {"map": 0.0, "precision": 0.0, "recall": 0.0}


def test_map_within_radius_hand_computed():
    q = np.array([[1, 1, 1, 1], [-1, -1, -1, -1]])
    db = np.array([[1, 1, 1, -1], [1, 1, 1, 1], [1, -1, 1, 1], [-1, -1, 1, 1]])
    ql, dl = np.array([0, 0]), np.array([1, 0, 0, 0])
    # query 0: ball (d<=1) = items 0, 1, 2 in order (d=0: 1; d=1: 0, 2) -> rel 1, 0, 1
    # query 1: ball empty (every item is at distance >= 2)
    got = metrics.map_within_radius(q, db, ql, dl, radius=1)
    assert got["map"] == pytest.approx((1 + 2 / 3) / 2 / 2)  # empty ball counts 0
    assert got["precision"] == pytest.approx((2 / 3 + 0) / 2)
    assert got["recall"] == pytest.approx((2 / 3 + 0) / 2)
    got = metrics.map_within_radius(q, db, ql, dl, radius=1, empty_ball="skip")
    assert got["map"] == pytest.approx((1 + 2 / 3) / 2)
    # the empty ball of query 1 left out of precision and recall as well: query 0's alone
    got = metrics.map_within_radius(q, db, ql, dl, radius=1, empty_ball="skip", pr_average="nonempty")
    assert (got["precision"], got["recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    # scores put item 0 (irrelevant) first inside the ball
    qs, ds = np.ones((2, 1)), np.array([[3.0], [2.0], [1.0], [0.0]])
    got = metrics.map_within_radius(q, db, ql, dl, radius=1, query_scores=qs, db_scores=ds, empty_ball="skip")
    assert got["map"] == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize("case", CASES)
def test_precision_recall_by_radius_matches_reference(case):
    q, db, ql, dl = random_case(60, **case)
    precision, recall = metrics.precision_recall_by_radius(q, db, ql, dl)
    assert precision.shape == recall.shape == (case["bits"] + 1,)
    for r in range(case["bits"] + 1):
        want = ref_map_within_radius(q, db, ql, dl, r)
        assert precision[r] == pytest.approx(want["precision"], abs=1e-12)
        assert recall[r] == pytest.approx(want["recall"], abs=1e-12)


@pytest.mark.parametrize("bits", [3, 6])
def test_ball_sizes_count_every_item_within_the_radius(bits, monkeypatch):
    """Items within d <= r of each query, against a loop over every pair, at every radius
    (0: equal codes only, K: the whole database), with many equal codes and query chunks of
    3 rows. Catches d < r for d <= r, a row of another chunk counted, or distances taken as
    agreements (K - d)."""
    q, db, _, _ = random_case(61, n_query=10, n_db=50, bits=bits)
    monkeypatch.setitem(metrics._CHUNK_ELEMENTS, "cpu", 3 * len(db))
    for r in range(bits + 1):
        want = [sum(ref_hamming(a, b) <= r for b in db) for a in q]
        assert metrics.ball_sizes(q, db, r).tolist() == want
    assert metrics.ball_sizes(q, db, bits).tolist() == [len(db)] * len(q)
    with pytest.raises(ValueError, match="only -1 and \\+1"):
        metrics.ball_sizes(np.zeros((2, bits)), db, 1)


# ------------------------------------------------------- backends, chunks, inputs

ALL_CALLS = [
    lambda q, db, ql, dl, qs, ds: metrics.mean_average_precision(q, db, ql, dl),
    lambda q, db, ql, dl, qs, ds: metrics.mean_average_precision(q, db, ql, dl, ties="expected"),
    lambda q, db, ql, dl, qs, ds: metrics.mean_average_precision(q, db, ql, dl, topk=9),
    lambda q, db, ql, dl, qs, ds: metrics.mean_average_precision(q, db, ql, dl, topk=9, query_scores=qs,
                                                                 db_scores=ds),
    lambda q, db, ql, dl, qs, ds: metrics.precision_recall_at_ranks(q, db, ql, dl, [3, 30]),
    lambda q, db, ql, dl, qs, ds: metrics.precision_recall_at_ranks(q, db, ql, dl, [3, 30], ties="expected"),
    lambda q, db, ql, dl, qs, ds: metrics.map_within_radius(q, db, ql, dl, 1),
    lambda q, db, ql, dl, qs, ds: metrics.map_within_radius(q, db, ql, dl, 1, qs, ds, "skip", "zero"),
    lambda q, db, ql, dl, qs, ds: metrics.map_within_radius(q, db, ql, dl, 1, qs, ds, "skip", "zero", "nonempty"),
    lambda q, db, ql, dl, qs, ds: metrics.precision_recall_by_radius(q, db, ql, dl),
    lambda q, db, ql, dl, qs, ds: metrics.hamming_distance(q, db),
]


def all_inputs(multi):
    q, db, ql, dl = random_case(70, n_query=15, n_db=60, multi=multi)
    return q, db, ql, dl, integer_scores(71, len(q)), integer_scores(72, len(db))


def assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-12)
    elif isinstance(a, tuple):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=1e-12)
    else:
        np.testing.assert_allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("call", ALL_CALLS)
@pytest.mark.parametrize("multi", [False, True])
def test_torch_inputs_give_numpy_results(call, multi):
    args = all_inputs(multi)
    want = call(*args)
    got = call(*(torch.from_numpy(a) for a in args))
    assert_same(got, want)
    assert isinstance(got, (float, dict, tuple, np.ndarray))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("call", ALL_CALLS)
@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("bits", [4, 12, 16])
def test_cuda_inputs_give_cpu_results(call, multi, bits):
    # 12 and 16 bits: code values up to 2^16 index the distance table (a float power
    # of two computed on the GPU once broke them)
    q, db, ql, dl = random_case(70, n_query=15, n_db=300, bits=bits, multi=multi)
    args = q, db, ql, dl, integer_scores(71, len(q)), integer_scores(72, len(db))
    assert_same(call(*(torch.from_numpy(a).cuda() for a in args)), call(*args))


@pytest.mark.parametrize("call", ALL_CALLS)
def test_chunked_queries_give_the_same_results(call, monkeypatch):
    args = all_inputs(True)
    want = call(*args)
    monkeypatch.setitem(metrics._CHUNK_ELEMENTS, "cpu", 100)  # 1 query per chunk
    assert_same(call(*args), want)


@pytest.mark.parametrize("call", ALL_CALLS)
def test_inputs_are_not_modified(call):
    args = all_inputs(True)
    copies = [a.copy() for a in args]
    call(*args)
    for a, c in zip(args, copies):
        np.testing.assert_array_equal(a, c)
    tensors = [torch.from_numpy(c.copy()) for c in copies]
    call(*tensors)
    for t, c in zip(tensors, copies):
        np.testing.assert_array_equal(t.numpy(), c)


def test_read_only_and_strided_inputs_work():
    q, db, ql, dl = random_case(80)
    want = metrics.mean_average_precision(q, db, ql, dl)
    for a in (q, db, ql, dl):
        a.setflags(write=False)
    assert metrics.mean_average_precision(q, db, ql, dl) == want
    reversed_db = db[::-1]
    assert metrics.mean_average_precision(q, reversed_db, ql, dl[::-1]) == pytest.approx(
        ref_map(q, reversed_db, ql, dl[::-1]), abs=1e-12)


# ------------------------------------------------ label groups, cells, compiled passes

@pytest.mark.parametrize("bits", [20, 40])
@pytest.mark.parametrize("multi", [False, True])
def test_map_one_word_codes_with_sorted_cells_match_reference(bits, multi):
    # (group, code) keys too many for dense counting: cells come from a sort.
    # Catches a wrong shift or mask when a key is split back into code and group.
    q, db, ql, dl = random_case(100 + bits, n_query=6, n_db=30, bits=bits, multi=multi)
    db[5:10] = db[0]  # a tie group of five
    q[1] = db[0]
    assert metrics.mean_average_precision(q, db, ql, dl) == pytest.approx(ref_map(q, db, ql, dl), abs=1e-12)
    assert metrics.mean_average_precision(q, db, ql, dl, topk=7) == pytest.approx(
        ref_map(q, db, ql, dl, topk=7), abs=1e-12)
    q, db, ql, dl = q[:4], db[3:10], ql[:4], dl[3:10]  # few items: every tie order is enumerated
    want = np.mean([ref_expected_ap_exact(i, q, db, ql, dl) for i in range(len(q))])
    assert metrics.mean_average_precision(q, db, ql, dl, ties="expected") == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("ids", [[7, 10 ** 9, -5], [-3, -2, -1]])
def test_map_with_sparse_or_negative_class_ids_matches_reference(ids):
    # Far-apart ids are grouped by a sort, close ones by an offset; catches an offset
    # applied to one side only (queries of class -5 would find nothing).
    q, db, ql, dl = random_case(110, n_query=8, n_db=40)
    ids = np.array(ids)
    ql, dl = ids[ql % 3], ids[dl]
    ql[0] = 12345  # a class the database does not hold
    for topk in (None, 9):
        assert metrics.mean_average_precision(q, db, ql, dl, topk=topk) == pytest.approx(
            ref_map(q, db, ql, dl, topk=topk), abs=1e-12)


def test_map_with_more_than_64_labels_matches_reference():
    # Label rows span two packed words: a label in the second word alone must still
    # make items relevant (catches relevance read from the first word only).
    q, db, ql, dl = random_case(120, n_query=6, n_db=30, bits=3, multi=True, classes=70)
    ql[:, :64], dl[:5, :64] = 0, 0  # queries whose labels all lie in the second word
    dl[:5, 64:] = 1
    assert metrics.mean_average_precision(q, db, ql, dl) == pytest.approx(ref_map(q, db, ql, dl), abs=1e-12)
    assert metrics.mean_average_precision(q, db, ql, dl) > 0
    q, db, ql, dl = q[:4], db[:7], ql[:4], dl[:7]  # few items: every tie order is enumerated
    want = np.mean([ref_expected_ap_exact(i, q, db, ql, dl) for i in range(len(q))])
    assert metrics.mean_average_precision(q, db, ql, dl, ties="expected") == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("call", ALL_CALLS)
def test_compiled_batches_of_queries_give_the_same_results(call, monkeypatch):
    # One distinct query per compiled call: catches results put back in the wrong rows.
    args = all_inputs(True)
    want = call(*args)
    monkeypatch.setattr(metrics, "_RELEVANCE_ELEMENTS", 1)
    assert_same(call(*args), want)


@pytest.mark.parametrize("bits", [1, 2, 5, 8])
def test_distance_table_counts_items_at_each_distance(bits):
    # Against a direct count; catches the columns updated in ascending order (an item
    # would move two distances in one pass) and a bit skipped.
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 2 ** bits, 12).astype(np.uint64)[:, None]
    counts = rng.integers(1, 4, 12)
    table = hamming_kernels.distance_table(codes, counts, bits)
    want = np.zeros((2 ** bits, bits + 1), np.int64)
    for x in range(2 ** bits):
        for c, m in zip(codes[:, 0], counts):
            want[x, bin(x ^ int(c)).count("1")] += m
    np.testing.assert_array_equal(table, want)


def test_pack_rows_bit_order():
    # Bit k of word w is column 64w + k, set where the value is positive.
    x = -np.ones((2, 70))
    x[0, [0, 3, 63]] = 1
    x[1, [64, 69]] = 1
    np.testing.assert_array_equal(hamming_kernels.pack_rows(x),
                                  np.array([[1 + 8 + 2 ** 63, 0], [0, 1 + 32]], dtype=np.uint64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.int8])
def test_half_precision_and_small_integer_code_tensors(dtype):
    # numpy has no bfloat16: catches the CPU path handing such a tensor to numpy as is.
    q, db, ql, dl = random_case(130)
    got = metrics.mean_average_precision(torch.tensor(q, dtype=dtype), torch.tensor(db, dtype=dtype), ql, dl)
    assert got == pytest.approx(ref_map(q, db, ql, dl), abs=1e-12)


# ---------------------------------------------------------------------- bad inputs

def bad_input_calls():
    q, db, ql, dl = random_case(90)
    mq, mdb, mql, mdl = random_case(90, multi=True)
    zero = q.copy()
    zero[0, 0] = 0
    two = db.copy()
    two[1, 1] = 2
    nan = np.full((len(q), 2), np.nan)
    yield "zero in codes", lambda: metrics.mean_average_precision(zero, db, ql, dl)
    yield "2 in codes", lambda: metrics.mean_average_precision(q, two, ql, dl)
    yield "0/1 codes", lambda: metrics.hamming_distance((q > 0).astype(int), db)
    yield "1-D codes", lambda: metrics.mean_average_precision(q[0], db, ql[:1], dl)
    yield "bit mismatch", lambda: metrics.mean_average_precision(q[:, :3], db, ql, dl)
    yield "no queries", lambda: metrics.mean_average_precision(q[:0], db, ql[:0], dl)
    yield "label rows", lambda: metrics.mean_average_precision(q, db, ql[:-1], dl)
    yield "label kinds", lambda: metrics.mean_average_precision(mq, mdb, ql, mdl)
    yield "label width", lambda: metrics.mean_average_precision(mq, mdb, mql[:, :2], mdl)
    yield "multi-hot 2", lambda: metrics.mean_average_precision(mq, mdb, mql * 2, mdl)
    yield "float class ids", lambda: metrics.mean_average_precision(q, db, ql.astype(float), dl)
    yield "empty policy", lambda: metrics.mean_average_precision(q, db, ql, dl, empty="drop")
    yield "ties policy", lambda: metrics.mean_average_precision(q, db, ql, dl, ties="random")
    yield "topk zero", lambda: metrics.mean_average_precision(q, db, ql, dl, topk=0)
    yield "expected topk", lambda: metrics.mean_average_precision(q, db, ql, dl, topk=5, ties="expected")
    yield "expected scores", lambda: metrics.mean_average_precision(
        q, db, ql, dl, ties="expected", query_scores=q, db_scores=db)
    yield "one score side", lambda: metrics.mean_average_precision(q, db, ql, dl, query_scores=q)
    yield "nan scores", lambda: metrics.map_within_radius(q, db, ql, dl, 1, nan, np.ones((len(db), 2)))
    yield "score width", lambda: metrics.map_within_radius(q, db, ql, dl, 1, q, db[:, :2])
    yield "negative radius", lambda: metrics.map_within_radius(q, db, ql, dl, -1)
    yield "k zero", lambda: metrics.precision_at_k(q, db, ql, dl, 0)
    yield "ball policy", lambda: metrics.map_within_radius(q, db, ql, dl, 1, empty_ball="none")
    yield "pr_average policy", lambda: metrics.map_within_radius(q, db, ql, dl, 1, pr_average="queries")
    yield "string codes", lambda: metrics.hamming_distance(np.array([["a", "b"]]), db[:, :2])


@pytest.mark.parametrize("name,call", list(bad_input_calls()), ids=[n for n, _ in bad_input_calls()])
def test_bad_inputs_raise_value_error(name, call):
    with pytest.raises(ValueError):
        call()
