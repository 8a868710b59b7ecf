"""utils.index: exact radius and top-k search against brute force (ties included, every code
length from 4 to 64), build -> search round trips with a MAH run folder and an MMHH
snapshot, an index reopened from disk, and bad input as one line."""
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

import numpy as np
import pytest
import torch
from PIL import Image

from utils import index as ix
from utils import mah, mmhh
from utils.data.loader import load_digits
from utils.errors import run

LENGTHS = (4, 5, 8, 12, 13, 16, 17, 24, 31, 40, 48, 56, 63, 64)


def clustered(n, bits, seed, noise=0.1):
    """n codes in {-1, +1}: 6 prototypes with bit noise, so that balls hold many tied items."""
    rng = np.random.default_rng(seed)
    protos = np.where(rng.random((6, bits)) < 0.5, -1, 1)
    flips = np.where(rng.random((n, bits)) < noise, -1, 1)
    return protos[rng.integers(0, 6, n)] * flips


def brute(q, d):
    return (q[:, None, :] != d[None, :, :]).sum(2)  # Q x N distances


@pytest.mark.parametrize("bits", LENGTHS)
def test_radius_and_top_k_are_the_brute_force_answers(bits):
    """Every item within r (r = 0 to 4, beyond the substrings' count for multi-index hashing)
    and the k nearest (ties by item id), against distances computed bit by bit. Catches a
    flip count below the pigeonhole bound (items missed), FAISS's strict < radius left as is,
    padding bits that add distance, FAISS's tie order kept, or tied queries given another
    query's answer when fetched together."""
    db, queries = clustered(1500, bits, bits), clustered(25, bits, bits + 100)
    packed = ix.pack(db)
    structure, described = ix.structure(packed.shape[1] * 8)
    structure.add(packed)
    dist = brute(queries, db)
    for r in range(5):
        for (ids, d), row in zip(ix.within(structure, described, ix.pack(queries), r), dist):
            want = np.flatnonzero(row <= r)
            want = want[np.lexsort((want, row[want]))]
            assert ids.tolist() == want.tolist() and d.tolist() == row[want].tolist()
    flat = ix.Index.__new__(ix.Index)
    flat.manifest, flat.packed = {"packed_bits": packed.shape[1] * 8}, packed
    for k, chunk in ((1, 100), (7, 100), (200, 100), (7, 2)):  # chunk 2: tied queries fetched in parts
        for (ids, d), row in zip(ix.top_k(flat.flat(), ix.pack(queries), k, chunk=chunk), dist):
            want = np.lexsort((np.arange(len(row)), row))[:k]
            assert ids.tolist() == want.tolist() and d.tolist() == row[want].tolist()


def test_structures_cover_every_bit():
    """Hash over all bits up to 16, else substrings of at most 16 bits that tile the code."""
    for packed_bits in range(8, 72, 8):
        _, described = ix.structure(packed_bits)
        if packed_bits <= 16:
            assert described == {"type": "IndexBinaryHash", "b": packed_bits}
        else:
            assert described["substrings"] * described["b"] == packed_bits and described["b"] <= 16


def test_packing_pads_with_zero_bits():
    codes = np.array([[1, -1, 1, 1, -1], [-1, -1, -1, -1, 1]])
    assert ix.pack(codes).tolist() == [[0b01101], [0b10000]]  # bit j of a code is bit j of its byte


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
    """A MAH smoke run (12 bits) and an MMHH smoke snapshot (16 bits) on digits, and a folder
    of 40 digit images in two subfolders."""
    root = tmp_path_factory.mktemp("index")
    parser = mah.get_args_parser()
    parser.set_defaults(script="cascade_CIFAR-10", arch="cascade", dataset="digits", paper=dict(
        bits="4", head_weights="4,2,1", gamma=200, max_iter=41, epochs=3, batch_size=64, num_samples=2000,
        eval_every=1))
    mah.main(parser.parse_args(["--preset", "smoke", "--gpu", "cpu", "--bits", "12", "--output-dir",
                                str(root / "run")]))
    mmhh.train_main(mmhh.get_train_parser().parse_args([
        "--s_dataset", "digits", "--preset", "smoke", "--gpu_id", "cpu", "--hash_bit", "16", "--log_dir",
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
    back from disk answers as the codes do. Catches another head's codes, another
    preprocessing, or names out of step with the codes."""
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
    np.testing.assert_array_equal(index.packed, ix.pack(encoder.codes(x).numpy()))
    query = trained / "imgs" / names[5]
    code, lines, err = cli("search", "--index", out, "--query", query, "--topk", 40, "--gpu", "cpu")
    hits = [json.loads(line) for line in lines]
    assert code in (0, None) and len(hits) == 40 and [h["rank"] for h in hits] == list(range(1, 41))
    assert any(h["item"] == 5 and h["distance"] == 0 for h in hits)
    assert [(h["distance"], h["item"]) for h in hits] == sorted((h["distance"], h["item"]) for h in hits)
    # item queries on the reopened index: the brute-force ball of radius 1
    code, lines, _ = cli("search", "--index", out, "--item", 5, 6, "--radius", 1)
    codes = np.unpackbits(index.packed, axis=1, bitorder="little")[:, :index.manifest["bits"]]
    dist = brute(codes[[5, 6]], codes)
    for q, row in zip((5, 6), dist):
        got = [(h["item"], h["distance"]) for h in map(json.loads, lines) if h["query"] == q]
        want = np.flatnonzero(row <= 1)
        assert got == [(int(i), int(row[i])) for i in want[np.lexsort((want, row[want]))]]
    code, lines, _ = cli("info", "--index", out)
    facts = json.loads("\n".join(lines))
    assert facts["items"] == 40 and facts["bits"] == encoder.bits and facts["bytes_per_item"] == -(-encoder.bits // 8)


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
    for f in ix.Index.FILES:
        (corrupt / f).write_bytes((out / f).read_bytes())
    np.save(corrupt / "codes.npy", np.zeros((3, 2), np.uint8))
    other = tmp_path / "other"
    manifest = json.loads((out / "manifest.json").read_text())
    os.makedirs(other)
    for f in ix.Index.FILES:
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
