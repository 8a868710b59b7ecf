"""utils.index: exact radius and top-k search against brute force (ties included, every code
length from 4 to 64), build -> search round trips with a MAH run folder and an MMHH
snapshot, an index reopened from disk, and bad input as one line."""
import json
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

import numpy as np
import pytest
import torch
from PIL import Image

from utils import index as ix
from utils.index import folder as folder_module
from utils import mah, mmhh
from utils.data.loader import load_digits
from utils.errors import run
from utils.report import figures

LENGTHS = (4, 5, 8, 12, 13, 16, 17, 24, 31, 40, 48, 56, 63, 64)


def clustered(n, bits, seed, noise=0.1):
    """n codes in {-1, +1}: 6 prototypes with bit noise, so that balls hold many tied items."""
    rng = np.random.default_rng(seed)
    protos = np.where(rng.random((6, bits)) < 0.5, -1, 1)
    flips = np.where(rng.random((n, bits)) < noise, -1, 1)
    return protos[rng.integers(0, 6, n)] * flips


def brute(q, d):
    return (q[:, None, :] != d[None, :, :]).sum(2)  # Q x N distances


def searched(packed, bits, asked):
    """(flat scan, structure, its description) over packed codes, padded as the index pads them."""
    padded = ix.pad(packed, ix.scan_width(packed.shape[1]))
    described = ix.choose(asked, padded, bits)
    structure = None
    if described["type"] != "scan":
        structure = ix.new_structure(bits, padded.shape[1])
        structure.add(padded)
    return ix.flat_index(padded), structure, described


def ranked_reference(row, r=None, k=None):
    """Item ids of a row of distances within r, or the first k, by (distance, id)."""
    order = np.lexsort((np.arange(len(row)), row))
    return order[row[order] <= r] if k is None else order[:k]


@pytest.mark.parametrize("bits", LENGTHS)
def test_radius_and_top_k_are_the_brute_force_answers(bits):
    """Every item within r (r = 0 to 4, beyond the substrings' count for multi-index hashing),
    by the structure and by the padded scan, and the k nearest (ties by item id) by the radius
    scan, against distances computed bit by bit. Catches a flip count below the pigeonhole
    bound (items missed), FAISS's strict < radius left as is, padding bits that add distance,
    the ball's items not ranked by (distance, id), or answers of a batch given to the wrong
    queries."""
    db, queries = clustered(1500, bits, bits), clustered(25, bits, bits + 100)
    flat, structure, described = searched(ix.pack(db), bits, "mih")
    assert described["up_to_radius"] == bits
    padded = ix.pad(ix.pack(queries), flat.code_size)
    dist = brute(queries, db)
    for r in range(5):
        for use in (structure, None):
            for (ids, d), row in zip(ix.within(flat, use, described, padded, r), dist):
                want = ranked_reference(row, r=r)
                assert ids.tolist() == want.tolist() and d.tolist() == row[want].tolist()
    scan = ix.Scan(ix.pad(ix.pack(db), flat.code_size))
    for k, memory in ((1, None), (7, None), (200, None), (7, 0), (200, 0), (1500, None), (2000, None)):
        # memory 0: one query a batch; k = N: every item; k > N: every item, no more
        got = ix.top_k(scan, padded, k, **({} if memory is None else {"memory": memory}))
        for (ids, d), row in zip(got, dist):
            want = ranked_reference(row, k=k)
            assert ids.tolist() == want.tolist() and d.tolist() == row[want].tolist()


def test_the_block_scan_answers_as_one_flat_scan(monkeypatch):
    """BlockScan over blocks of 64 8-byte codes (1,000 codes: 15 whole blocks and a part) finds
    the balls of FAISS's one flat scan, and within ranks them as distances computed bit by bit.
    Catches a block's ids left without its offset, answers given to another query, or the
    last, partial block dropped."""
    from utils.index import structures
    monkeypatch.setattr(structures, "BLOCK_BYTES", 512)
    monkeypatch.setattr(structures, "CACHED_BYTES", 0)
    db, queries = clustered(1000, 48, 11), clustered(30, 48, 12)
    padded, asked = ix.pad(ix.pack(db), 8), ix.pad(ix.pack(queries), 8)
    blocked, flat = structures.BlockScan(padded), ix.flat_index(padded)
    assert len(blocked.blocks) == 16
    dist = brute(queries, db)
    for r in (0, 3, 8, 48):
        keys = np.concatenate([k for k, _ in blocked.answers(asked, r + 1, False)])  # (query * 65 + d) * 1000 + id
        lims, _, ids_f = flat.range_search(asked, r + 1)
        ids, owner = keys % 1000, keys // 1000 // 65
        assert all(set(ids[owner == q]) == set(ids_f[a:z]) for q, (a, z) in enumerate(zip(lims[:-1], lims[1:])))
        for (got, d), row in zip(ix.within(blocked, None, ix.SCAN, asked, r), dist):
            want = ranked_reference(row, r=r)
            assert got.tolist() == want.tolist() and d.tolist() == row[want].tolist()


@pytest.mark.parametrize("bits, noise", ((12, 0.1), (48, 0.005)))
def test_radius_search_through_the_distinct_codes_is_the_brute_force_answer(bits, noise):
    """Where the items repeat codes (2,000 items near 6 prototypes, few bits flipped), within scans
    the distinct codes and takes their items: every item within r (0 to 5), ranked by
    (distance, id), against distances computed bit by bit. Catches a code's items given another
    code's distance, ties between codes at one distance left in code order instead of by id,
    or a code's items cut off at the next code's start."""
    codes = clustered(2020, bits, 31, noise)  # queries near the database's prototypes
    db, queries = codes[:2000], codes[2000:]
    width = ix.scan_width(-(-bits // 8))
    padded, asked = ix.pad(ix.pack(db), width), ix.pad(ix.pack(queries), width)
    groups = ix.Groups(padded)
    assert len(groups.sizes) * 3 <= len(db)  # the codes repeat: the distinct-codes path is the one tested
    dist = brute(queries, db)
    for r in range(6):
        found = ix.within(ix.flat_index(padded), None, ix.SCAN, asked, r, groups)
        for (got, d), row in zip(found, dist):
            want = ranked_reference(row, r=r)
            assert got.tolist() == want.tolist() and d.tolist() == row[want].tolist()


class Reversed:
    """An IndexBinaryFlat whose range answers come, for each query, in descending item order."""

    def __init__(self, flat):
        self.flat, self.ntotal, self.code_size = flat, flat.ntotal, flat.code_size

    def range_search(self, queries, radius):
        lims, D, I = self.flat.range_search(queries, radius)
        ends = lims.astype(np.int64)  # FAISS's offsets are unsigned
        flipped = np.concatenate([np.arange(z - 1, a - 1, -1) for a, z in zip(ends[:-1], ends[1:])] + [[]])
        return lims, D[flipped.astype(np.int64)], I[flipped.astype(np.int64)]


@pytest.mark.parametrize("queries, answered", [(40, "in item order"), (40, "reversed"), (2100, "in item order")])
def test_within_ranks_ties_by_id_whatever_the_order_of_the_answers(queries, answered):
    """within ranks a scan's answers by a radix sort of (query, distance) that keeps ties in the
    order the scan gave them, where Q x (8 width + 1) fits 16 bits (40 queries of 12-bit codes,
    4 wide: 40 x 33); answers that do not come in item order, and 2,100 queries (69,300 keys),
    take the sort of one int64 key. Against distances computed bit by bit, with many ties (300
    codes, radius 3). Catches the order check dropped (ties by descending id), a key that
    overflows 16 bits, or distances read off the wrong part of the key."""
    db, asked = clustered(300, 12, 21), clustered(queries, 12, 22)
    padded, q = ix.pad(ix.pack(db), 4), ix.pad(ix.pack(asked), 4)
    flat = ix.flat_index(padded)
    dist = brute(asked, db)
    for r in (0, 3):
        found = ix.within(flat if answered == "in item order" else Reversed(flat), None, ix.SCAN, q, r)
        assert len(found) == queries
        for (got, d), row in zip(found, dist):
            want = ranked_reference(row, r=r)
            assert got.tolist() == want.tolist() and d.tolist() == row[want].tolist()


class Niceness(torch.utils.data.Dataset):
    """Four 3 x 1 x 1 images whose pixels are the niceness of the process that decoded them."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.full((3, 1, 1), os.nice(0), dtype=torch.uint8)


class PixelEncoder:
    """An encoder on the CPU whose 'code' of an image is its first pixel, normalised back to the
    value the dataset gave (mean 0, std 1 / 255 undo normalise's / 255)."""
    device, bits, preprocessing = torch.device("cpu"), 1, {"mean": (0.0,) * 3, "std": (1 / 255,) * 3}

    def codes(self, x):
        return x[:, :1, 0, 0].round()


@pytest.mark.parametrize("workers", [None, 2])
def test_decoding_workers_on_the_cpu_run_at_the_lowest_priority(workers):
    """With the model on the CPU the decoding workers (by default the cores, at most 4) run at
    niceness 19, so that they decode in the gaps the forward pass leaves instead of stalling its
    threads; the encoding process itself keeps its priority. Catches the worker start dropped, the
    main process niced instead, or no workers by default."""
    from utils.index.encode import encode_dataset
    if os.nice(0) == 19:
        pytest.skip("this process already runs at niceness 19: a niced worker could not be told apart")
    seen = encode_dataset(PixelEncoder(), Niceness(), 2, workers, progress=False)  # 4 x 1
    assert seen.flatten().tolist() == [19.0] * 4 and os.nice(0) != 19


def test_on_the_cpu_decoding_and_the_forward_pass_take_turns():
    """in_turns takes batches until a turn's bytes are held before giving the first of them, and
    gives every batch once, in order (the last, partial turn too). Seven batches of 100 bytes,
    turns of 300: batch i is given once min(7, 3 (i // 3 + 1)) have been taken. Catches the
    batches passed straight through (i + 1 taken), a turn given before it is full, or the last
    turn dropped."""
    from utils.index.encode import in_turns

    taken = []

    def batches():
        for i in range(7):
            taken.append(i)
            yield torch.full((100,), i, dtype=torch.uint8)  # 100 bytes, each pixel its batch's number

    given = [(int(x[0]), len(taken)) for x in in_turns(batches(), memory=300)]
    assert given == [(i, min(7, 3 * (i // 3 + 1))) for i in range(7)]


class Sample:
    """A sample scan that puts every query's m-th nearest sample code at `distance`: a radius
    too small (0: the ball falls short, again and again) or the largest."""

    def __init__(self, ntotal, distance):
        self.ntotal, self.distance = ntotal, distance

    def search(self, queries, m):
        return np.full((len(queries), m), self.distance, np.int32), np.zeros((len(queries), m), np.int64)


@pytest.mark.parametrize("bits", (12, 48))
def test_top_k_fetches_again_where_the_sampled_radius_falls_short(bits):
    """Whatever radius the sample gives, top k is the first k by (distance, id): a radius of 0
    leaves most balls short of k, to be fetched again one larger at a time, and the largest
    radius fetches every item. Catches a short ball taken as the answer, or a query lost or
    fetched at the same radius again (which would never end)."""
    db, queries = clustered(1500, bits, 3), clustered(25, bits, 4)
    scan = ix.Scan(ix.pad(ix.pack(db), ix.scan_width(-(-bits // 8))))
    padded = ix.pad(ix.pack(queries), scan.flat.code_size)
    dist = brute(queries, db)
    for distance in (0, bits):
        scan.sample = Sample(scan.sample.ntotal, distance)
        for k in (1, 7, 200):
            for (ids, d), row in zip(ix.top_k(scan, padded, k), dist):
                want = ranked_reference(row, k=k)
                assert ids.tolist() == want.tolist() and d.tolist() == row[want].tolist()


@pytest.mark.parametrize("bits", (5, 12, 48))
def test_top_k_through_the_distinct_codes_is_the_brute_force_answer(bits):
    """Top k from the codes grouped (each distinct code once, with its items), against
    distances computed bit by bit: k from 1 to every item, with the sample's radius, one of 0
    (balls of codes short of k items, fetched again) and the largest. Catches items of a code
    at the k-th distance taken in code order rather than by id, items of two codes at one
    distance not merged by id, a short ball taken as the answer, or a group's ids
    read from another group."""
    db, queries = clustered(1500, bits, 5, noise=0.02), clustered(25, bits, 6, noise=0.02)
    padded = ix.pad(ix.pack(db), ix.scan_width(-(-bits // 8)))
    groups, scan = ix.Groups(padded), ix.Scan(padded)
    assert len(groups.sizes) * 2 <= len(db) and ix.grouped(len(db), len(groups.sizes))
    dist = brute(queries, db)
    asked = ix.pad(ix.pack(queries), padded.shape[1])
    for sample in (scan.sample, Sample(scan.sample.ntotal, 0), Sample(scan.sample.ntotal, bits)):
        scan.sample = sample
        for k in (1, 7, 200, 1500):
            for (ids, d), row in zip(ix.top_k(scan, asked, k, groups=groups), dist):
                want = ranked_reference(row, k=k)
                assert ids.tolist() == want.tolist() and d.tolist() == row[want].tolist()


def test_grouping_is_chosen_where_codes_repeat_and_never_under_structure_scan():
    """Catches the ratio read the wrong way round, or --structure scan not giving the plain scan."""
    assert ix.grouped(1000, 666) and not ix.grouped(1000, 667) and not ix.grouped(1000, 10, "scan")


def test_the_index_folder_keeps_the_grouping_where_searches_use_it(tmp_path):
    """write_index groups repeated codes once (groups.npy, group_sizes.npy; manifest
    searched_through "distinct codes"), and the folder read back answers top k as distances
    computed bit by bit; distinct codes, or --structure scan, search the items and write no
    grouping files; a damaged grouping file is one error, and so is a folder of the previous
    format (its manifest named the grouping top_k). Catches the grouping recomputed or lost
    between build and search, used under --structure scan, or an old folder searched without
    its grouping."""
    from utils.errors import UserError
    from utils.index.folder import write_index

    repeated, queries = clustered(600, 12, 7, noise=0.02), clustered(9, 12, 8, noise=0.02)
    rng = np.random.default_rng(0)
    spread = np.where(rng.random((600, 40)) < 0.5, -1, 1)
    cases = [("grouped", repeated, "auto", "distinct codes"), ("spread", spread, "auto", "items"),
             ("scan", repeated, "scan", "items")]
    for name, codes, asked, how in cases:
        out = tmp_path / name
        manifest = write_index(str(out), codes, [str(i) for i in range(600)], None, {}, asked)
        assert manifest["searched_through"] == how and os.path.exists(out / "groups.npy") == (how == "distinct codes")
    index = ix.Index(str(tmp_path / "grouped"))
    assert index.groups is not None
    found = ix.top_k(index.scan, index.queries(ix.pack(queries)), 50, groups=index.groups)
    for (ids, d), row in zip(found, brute(queries, repeated)):
        assert ids.tolist() == ranked_reference(row, k=50).tolist()
    assert ix.Index(str(tmp_path / "scan")).groups is None
    (tmp_path / "grouped" / "groups.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(UserError, match="is corrupt"):
        ix.Index(str(tmp_path / "grouped"))
    os.remove(tmp_path / "grouped" / "groups.npy")
    with pytest.raises(UserError, match="lacks groups.npy"):
        ix.Index(str(tmp_path / "grouped"))
    path = tmp_path / "spread" / "manifest.json"
    path.write_text(path.read_text().replace('"format": 3', '"format": 2'))
    with pytest.raises(UserError, match=r"another version of utils.index \(format 2, this one reads 3\); build"):
        ix.Index(str(tmp_path / "spread"))


@pytest.mark.parametrize("bits, width", [(12, 4), (48, 8), (64, 8)])
def test_padded_scans_answer_as_the_codes_as_stored(bits, width):
    """12- and 48-bit codes are searched 4 and 8 bytes wide (FAISS's fast kernels), 64-bit ones
    as stored: the padded scan's balls and top k (ties by id) are those of a popcount over the
    stored bytes and those of FAISS's scan of the stored width. Catches queries padded unlike
    the codes (or left unpadded), or the padded width's tie order differing."""
    db, queries = clustered(3000, bits, 7, noise=0.05), clustered(20, bits, 8, noise=0.05)
    stored, asked = ix.pack(db), ix.pack(queries)
    assert ix.scan_width(stored.shape[1]) == width
    dist = np.bitwise_count(asked[:, None, :] ^ stored[None, :, :]).sum(2)  # Q x N, bytes as stored
    padded, unpadded = ix.flat_index(ix.pad(stored, width)), ix.flat_index(stored)
    scan = {"type": "scan", "up_to_radius": -1}
    for r in (0, 1, 2, 3):
        a = ix.within(padded, None, scan, ix.pad(asked, width), r)
        b = ix.within(unpadded, None, scan, asked, r)
        for (ids, d), (ids_b, _), row in zip(a, b, dist):
            want = ranked_reference(row, r=r)
            assert ids.tolist() == want.tolist() == ids_b.tolist() and d.tolist() == row[want].tolist()
    for k in (1, 10, 100):
        a, b = ix.top_k(ix.Scan(ix.pad(stored, width)), ix.pad(asked, width), k), ix.top_k(ix.Scan(stored), asked, k)
        for (ids, d), (ids_b, _), row in zip(a, b, dist):
            assert ids.tolist() == ranked_reference(row, k=k).tolist() == ids_b.tolist()


def test_the_visits_the_cost_model_expects_are_those_counted_item_by_item():
    """The expected codes a lookup visits, for a query drawn from the database, with 0 and 1
    flips: against counting, for each item as the query, the items whose substring lies within
    the flips of its own, summed over the substrings. Catches a wrong transform, substrings read
    from the wrong bits, or flips not counted."""
    from utils.index.structures import bucket_spectra, expected_visits, substring_values
    bits = 40
    db = clustered(600, bits, 3, noise=0.05)
    padded = ix.pad(ix.pack(db), 8)
    m, b = ix.substrings(bits)
    assert (m, b) == (3, 14)
    values = np.stack([substring_values(padded, h * b, b) for h in range(m)], 1)  # N x m
    unpacked = np.unpackbits(padded, axis=1, bitorder="little")
    for h in range(m):  # a substring is bits h*b .. h*b + b - 1 of the code
        assert (values[:, h] == unpacked[:, h * b:(h + 1) * b] @ (1 << np.arange(b))).all()
    _, spectra = bucket_spectra(padded, bits)
    for f in (0, 1):
        near = np.bitwise_count(values[:, None, :] ^ values[None, :, :]) <= f  # N x N x m
        assert expected_visits(spectra, b, f, len(db)) == pytest.approx(near.sum() / len(db))


def test_the_choice_keeps_multi_index_hashing_on_random_codes_and_scans_crowded_ones():
    """40,000 random 48-bit codes: about one item a bucket, multi-index hashing is kept, at
    radius 2 at least; the same number of codes around 6 prototypes (5% flips) crowd the
    buckets and are scanned; --structure overrides either way. Catches a choice that ignores
    the codes, or one that keeps the structure where it compares more codes than a scan."""
    rng = np.random.default_rng(0)
    random = ix.pad(ix.pack(rng.random((40000, 48)) < 0.5), 8)
    crowded = ix.pad(ix.pack(clustered(40000, 48, 1, noise=0.05)), 8)
    kept = ix.choose("auto", random, 48)
    assert kept["type"] == "IndexBinaryMultiHash" and kept["up_to_radius"] >= 2 and "radii 0 to" in kept["reason"]
    scanned = ix.choose("auto", crowded, 48)
    assert scanned["type"] == "scan" and scanned["up_to_radius"] == -1 and "the padded scan" in scanned["reason"]
    assert ix.choose("mih", crowded, 48)["type"] == "IndexBinaryMultiHash"
    assert ix.choose("scan", random, 48)["type"] == "scan"


def test_structures_cover_every_bit():
    """One table over all the bits up to 16, else the fewest substrings of at most 16 bits that
    cover every bit."""
    for bits in range(1, 129):
        m, b = ix.substrings(bits)
        assert b <= 16 and m * b >= bits and (m - 1) * 16 < bits and (m == 1) == (bits <= 16)


def test_packing_pads_with_zero_bits():
    codes = np.array([[1, -1, 1, 1, -1], [-1, -1, -1, -1, 1]])
    assert ix.pack(codes).tolist() == [[0b01101], [0b10000]]  # bit j of a code is bit j of its byte
    assert ix.pad(ix.pack(codes), 4).tolist() == [[0b01101, 0, 0, 0], [0b10000, 0, 0, 0]]


# ------------------------------------------------------------------------- end to end

def cli(*argv):
    """python -m utils.index ARGV in this process: (exit status, stdout lines, stderr lines)."""
    out, err, code = StringIO(), StringIO(), 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            run(ix.main, ix.get_args_parser().parse_args([str(a) for a in argv]))
        except SystemExit as e:
            code = e.code
    return code, out.getvalue().splitlines(), [line for line in err.getvalue().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A MAH smoke run (12 bits) and an MMHH smoke snapshot (16 bits, MMHH loss) on digits, and a folder
    of 40 digit images in two subfolders."""
    root = tmp_path_factory.mktemp("index")
    parser = mah.get_args_parser()
    parser.set_defaults(script="cascade_CIFAR-10", arch="cascade", dataset="digits", paper=dict(
        bits="4", head_weights="4,2,1", gamma=200, max_iter=41, epochs=3, batch_size=64, num_samples=2000,
        eval_every=1))
    mah.main(parser.parse_args(["--preset", "smoke", "--gpu", "cpu", "--bits", "12", "--output-dir",
                                str(root / "run")]))
    mmhh.train_main(mmhh.get_train_parser().parse_args([
        "--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "cpu", "--hash_bit", "16", "--distance_type", "MMHH",
        "--log_dir",
        str(root / "log"), "--snap_path", str(root / "snap"), "--test_output_dir", str(root / "out")]))
    images, _ = load_digits()
    for i in range(40):
        os.makedirs(root / "imgs" / "ab"[i % 2], exist_ok=True)
        Image.fromarray(images[i]).save(root / "imgs" / "ab"[i % 2] / f"{i:02d}.png")
    return root


@pytest.mark.parametrize("model", ["run", "snap/empty_digits_digits_iter_00003"])
def test_build_then_search_finds_each_image_and_agrees_with_the_models_codes(trained, tmp_path, model):
    """A folder of images indexed with a MAH run folder and with an MMHH snapshot: the codes in
    the index are the model's own codes of the images (computed here through its forward
    pass), each image searched for is at distance 0 among its own results, and the index read
    back from disk answers as the codes do; `info` reports its facts. Catches another head's
    codes, another preprocessing, names out of step with the codes, or `info` reading a
    manifest key the build no longer writes."""
    out = tmp_path / "idx"
    code, lines, err = cli("build", "--model", trained / model, "--images", trained / "imgs", "--out", out, "--gpu",
                           "cpu", "--workers", 0)
    assert code in (0, None), err
    index = ix.Index(str(out))
    names = index.names
    assert names == sorted(names) and len(names) == 40 and names[0] == os.path.join("a", "00.png")
    encoder = ix.load_encoder(str(trained / model), torch.device("cpu"))
    transform = ix.transform_of(encoder.preprocessing)
    x = torch.stack([ix.read_image(str(trained / "imgs" / n), transform, "test") for n in names])
    np.testing.assert_array_equal(index.packed, ix.pack(encoder.codes(ix.network_input(encoder)(x)).numpy()))
    query = trained / "imgs" / names[5]
    code, lines, err = cli("search", "--index", out, "--query", query, "--topk", 40, "--gpu", "cpu")
    hits = [json.loads(line) for line in lines]
    assert code in (0, None) and len(hits) == 40 and [h["rank"] for h in hits] == list(range(1, 41))
    assert any(h["item"] == 5 and h["distance"] == 0 for h in hits)
    assert [(h["distance"], h["item"]) for h in hits] == sorted((h["distance"], h["item"]) for h in hits)
    # item queries on the reopened index, scanned (40 items: auto picks the scan) and through the
    # structure --structure mih asks for: the brute-force ball of radius 1
    forced = tmp_path / "mih"
    assert cli("build", "--model", trained / model, "--images", trained / "imgs", "--out", forced, "--gpu", "cpu",
               "--workers", 0, "--structure", "mih")[0] in (0, None)
    codes = np.unpackbits(index.packed, axis=1, bitorder="little")[:, :index.manifest["bits"]]
    dist = brute(codes[[5, 6]], codes)
    for folder in (out, forced):
        code, lines, _ = cli("search", "--index", folder, "--item", 5, 6, "--radius", 1)
        for q, row in zip((5, 6), dist):
            got = [(h["item"], h["distance"]) for h in map(json.loads, lines) if h["query"] == q]
            want = np.flatnonzero(row <= 1)
            assert got == [(int(i), int(row[i])) for i in want[np.lexsort((want, row[want]))]]
    code, lines, _ = cli("info", "--index", out)
    facts = json.loads("\n".join(lines))
    assert facts["items"] == 40 and facts["bits"] == encoder.bits and facts["bytes_per_item"] == -(-encoder.bits // 8)
    assert facts["structure"]["type"] == "scan" and "the padded scan" in facts["structure"]["reason"]
    # items at least 1.5 times the distinct codes: searches go through the codes
    assert facts["searched_through"] == ("distinct codes" if 1.5 * facts["distinct_codes"] <= 40 else "items")
    facts = json.loads("\n".join(cli("info", "--index", forced)[1]))
    assert facts["structure"]["type"] == "IndexBinaryHash" and "--structure mih" in facts["structure"]["reason"]


def test_from_run_exports_the_runs_database_codes_and_draws_the_picture(trained, tmp_path):
    """--from-run: the index holds V of the target head, item by item in the database's order,
    with its labels; --show writes a PNG. Catches the network's codes exported instead, or
    items out of the database order."""
    out = tmp_path / "v"
    code, _, err = cli("build", "--model", trained / "run", "--from-run", "--out", out, "--gpu", "cpu")
    assert code in (0, None), err
    index = ix.Index(str(out))
    V = torch.load(trained / "run" / "checkpoint.pt", weights_only=True)["V"][0].numpy()
    np.testing.assert_array_equal(index.packed, ix.pack(V))
    assert index.labels is not None and len(index.labels) == len(V) == len(index.names)
    code, _, err = cli("search", "--index", out, "--item", 0, 1, "--topk", 5, "--show", tmp_path / "s.png")
    assert code in (0, None), err
    with Image.open(tmp_path / "s.png") as im:
        assert im.format == "PNG"


def test_bad_inputs_are_one_line(trained, tmp_path):
    """A missing or corrupt index, a query image that does not open, a model of another code
    length, a radius below 0, an --out that holds files, --from-run with an MMHH snapshot."""
    out = tmp_path / "idx"
    assert cli("build", "--model", trained / "run", "--images", trained / "imgs", "--out", out, "--gpu", "cpu",
               "--workers", 0)[0] in (0, None)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    corrupt = tmp_path / "corrupt"
    os.makedirs(corrupt)
    for f in os.listdir(out):
        (corrupt / f).write_bytes((out / f).read_bytes())
    np.save(corrupt / "codes.npy", np.zeros((3, 2), np.uint8))
    other = tmp_path / "other"
    manifest = json.loads((out / "manifest.json").read_text())
    os.makedirs(other)
    for f in os.listdir(out):
        (other / f).write_bytes((out / f).read_bytes())
    (other / "manifest.json").write_text(json.dumps({**manifest, "model": str(trained / "snap" /
                                                                               "empty_digits_digits_iter_00003.pt")}))
    cases = [
        (("search", "--index", tmp_path / "none", "--item", 0), "is not an index folder"),
        (("search", "--index", corrupt, "--item", 0), "is corrupt"),
        (("search", "--index", out, "--query", tmp_path / "junk.png", "--gpu", "cpu"), "junk.png cannot be read"),
        (("search", "--index", other, "--query", trained / "imgs" / "a" / "00.png", "--gpu", "cpu"),
         "makes 16-bit codes, the index holds 12-bit ones"),
        (("search", "--index", out, "--item", 0, "--radius", -1), "--radius: must be >= 0"),
        (("search", "--index", out, "--item", 99), "the index holds items 0 to 39"),
        (("build", "--model", trained / "run", "--images", trained / "imgs", "--out", out, "--gpu", "cpu"),
         "exists and is not empty"),
        (("build", "--model", trained / "snap" / "empty_digits_digits_iter_00003", "--from-run", "--out",
          tmp_path / "n", "--gpu", "cpu"), "--from-run exports a MAH run's"),
    ]
    for argv, words in cases:
        code, _, err = cli(*argv)
        assert code == 2 and len(err) == 1 and words in err[0] and "Traceback" not in err[0], (argv, err)


def test_ctrl_c_during_build_leaves_no_index_folder(trained, tmp_path, monkeypatch):
    """Ctrl-C while build writes the index (its codes written, the manifest not yet): exit 130,
    one line saying the build was interrupted and nothing was written, no folder or temporary
    left (the new parent folder included); the same command then builds it. Catches the
    training runs' "before training started", or a half-written folder left as an index."""
    real = folder_module.atomic_write

    def interrupted(path, *args, **kwargs):
        if path.endswith("manifest.json"):
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(folder_module, "atomic_write", interrupted)
    out = tmp_path / "new" / "idx"
    argv = ("build", "--model", trained / "run", "--images", trained / "imgs", "--out", out, "--gpu", "cpu",
            "--workers", 0)
    code, _, err = cli(*argv)
    assert code == 130 and len(err) == 1, err
    assert f"interrupted building the index {out} (nothing was written)" in err[0]
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    assert cli(*argv)[0] in (0, None) and ix.Index(str(out)).manifest["items"] == 40


def test_search_names_the_model_file_that_is_gone(trained, tmp_path):
    """An index whose model folder lost its checkpoint: --query says which file is gone and how
    to fix it (restore it, or build the index again), in one line; --item still searches.
    Catches the encoder's "give --model", an option search does not take."""
    shutil.copytree(trained / "run", tmp_path / "run")
    out = tmp_path / "idx"
    assert cli("build", "--model", tmp_path / "run", "--images", trained / "imgs", "--out", out, "--gpu", "cpu",
               "--workers", 0)[0] in (0, None)
    os.remove(tmp_path / "run" / "checkpoint.pt")
    code, _, err = cli("search", "--index", out, "--query", trained / "imgs" / "a" / "00.png", "--gpu", "cpu")
    assert code == 2 and len(err) == 1, err
    assert f"model file {tmp_path / 'run' / 'checkpoint.pt'} is gone" in err[0] and "build the index again" in err[0]
    assert "--model" not in err[0]
    assert cli("search", "--index", out, "--item", 0)[0] in (0, None)


def test_collapsed_codes_are_warned_and_the_picture_says_what_it_shows(trained, tmp_path, monkeypatch):
    """30 copies of one image indexed with the MMHH snapshot: every item has one code. build
    warns, with the count of distinct codes; the --show picture of the top 3 says 30 items
    within d=0 (the whole index, not the 3 shown), promises no green and red frames (no
    labels), names the loss once, and its title fits the narrow figure. Catches each of
    those as it was: no warning, "3 items", the legend, "MMHH MMHH loss", a title cut off."""
    folder = tmp_path / "same"
    folder.mkdir()
    for i in range(30):
        shutil.copy(trained / "imgs" / "a" / "00.png", folder / f"{i:02d}.png")
    out = tmp_path / "idx"
    code, _, err = cli("build", "--model", trained / "snap" / "empty_digits_digits_iter_00003", "--images", folder,
                       "--out", out, "--gpu", "cpu", "--workers", 0)
    assert code in (0, None), err
    assert any(line.startswith("warning: the codes collapsed: 30 of the 30 items share one code (1 distinct code "
                               "in all)") for line in err), err
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.append(fig))
    code, _, err = cli("search", "--index", out, "--item", 0, "--topk", 3, "--show", tmp_path / "s.png")
    assert code in (0, None) and len(drawn) == 1, err
    fig = drawn[0]
    title = fig._suptitle
    words = title.get_text().replace("\n", " ")
    assert "green" not in words and words.count("MMHH") == 1 and "MMHH loss" in words and "top 3" in words
    assert title.get_window_extent(fig.canvas.get_renderer()).width <= fig.bbox.width
    assert fig.axes[0].get_ylabel() == "30 items\nwithin d=0"
