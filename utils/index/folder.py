"""The index folder: written whole or not at all, and read back."""
import contextlib
import json
import os
import shutil

import faiss
import numpy as np

from utils.atomic import atomic_write
from utils.errors import UserError
from utils.index.structures import Groups, Scan, choose, grouped, grouping, new_structure, pack, pad, scan_width
from utils.runs import make_folder, read_json

FORMAT = 3  # 1: codes searched as stored, always a structure; 2: the grouping's use under the manifest key top_k


def check_out(out):
    """--out must be new or an empty folder: checked before any work, and again when writing."""
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise UserError(f"--out {out} exists and is not empty; give a new folder")


def write_index(out, codes, names, labels, manifest, asked="auto"):
    """The index folder `out` from N x K codes. Its files are written into a temporary folder
    beside it, renamed to `out` once all are there: an interrupted build leaves no `out`."""
    check_out(out)
    out = os.path.normpath(out)
    made = make_folder(os.path.dirname(os.path.abspath(out)), "--out")
    tmp = f"{out}.{os.getpid()}.tmp"
    try:
        os.mkdir(tmp)
        packed = pack(codes)
        width = scan_width(packed.shape[1])
        padded = pad(packed, width)
        described = choose(asked, padded, codes.shape[1])
        order, sizes = grouping(padded)  # the distinct codes: counted always, kept where searches use them
        by_codes = grouped(len(padded), len(sizes), asked)
        manifest = {**manifest, "format": FORMAT, "bits": int(codes.shape[1]), "packed_bits": packed.shape[1] * 8,
                    "scan_bits": width * 8, "items": len(names), "distinct_codes": len(sizes),
                    "most_common_code_items": int(sizes.max()) if len(sizes) else 0,
                    "structure": described, "searched_through": "distinct codes" if by_codes else "items",
                    "bytes_per_item": packed.shape[1]}
        atomic_write(os.path.join(tmp, "codes.npy"), lambda f: np.save(f, packed))
        atomic_write(os.path.join(tmp, "items.json"), lambda f: f.write(json.dumps(names)), mode="w")
        if labels is not None:
            atomic_write(os.path.join(tmp, "labels.npy"), lambda f: np.save(f, np.asarray(labels)))
        if by_codes:  # the grouping, so that no search recomputes it
            order = order.astype(np.uint32 if len(padded) < 2 ** 32 else np.int64)
            atomic_write(os.path.join(tmp, "groups.npy"), lambda f: np.save(f, order))
            atomic_write(os.path.join(tmp, "group_sizes.npy"), lambda f: np.save(f, sizes))
        if described["type"] != "scan":
            structure = new_structure(codes.shape[1], width)
            structure.add(padded)
            faiss.write_index_binary(structure, os.path.join(tmp, "index.faiss"))
        atomic_write(os.path.join(tmp, "manifest.json"), lambda f: f.write(json.dumps(manifest, indent=1) + "\n"),
                     mode="w")
        check_out(out)  # the folder may have been filled while this build ran
        os.replace(tmp, out)  # onto an empty folder too
    except BaseException:  # Ctrl-C included: nothing of the build is left
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
    return manifest


class Index:
    """An index folder, read back: manifest, names, labels, packed codes, the padded flat scan,
    where the build chose one, the lookup structure, and where codes repeat enough (grouped),
    the items grouped by code, through which radius search and top k go."""

    FILES = ("manifest.json", "codes.npy", "items.json")

    def __init__(self, folder):
        missing = [f for f in self.FILES if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            raise UserError(f"--index {folder} is not an index folder (no {', '.join(missing)}); build one with "
                            "python -m utils.index build")
        self.folder = folder
        self.manifest = m = read_json(os.path.join(folder, "manifest.json"), "index manifest",
                                      keys=("format", "bits", "packed_bits", "items", "structure"))
        if m["format"] != FORMAT:
            raise UserError(f"--index {folder} was written by another version of utils.index (format {m['format']}, "
                            f"this one reads {FORMAT}); build it again")
        try:
            self.packed = np.load(os.path.join(folder, "codes.npy"))
            with open(os.path.join(folder, "items.json"), encoding="utf-8") as f:
                self.names = json.load(f)
            self.structure = None if m["structure"]["type"] == "scan" else \
                faiss.read_index_binary(os.path.join(folder, "index.faiss"))
        except (OSError, ValueError, RuntimeError) as e:
            raise UserError(f"--index {folder} is corrupt ({type(e).__name__}); build it again") from None
        labels = os.path.join(folder, "labels.npy")
        self.labels = np.load(labels) if os.path.exists(labels) else None
        n, width = m["items"], m["packed_bits"] // 8
        if self.packed.shape != (n, width) or len(self.names) != n or \
                (self.structure is not None and self.structure.ntotal != n):
            raise UserError(f"--index {folder} is corrupt: its files disagree on the number of items; build it again")
        self.width = m["scan_bits"] // 8
        padded = pad(self.packed, self.width)
        self.scan = Scan(padded)
        self.flat = self.scan.flat
        self.groups = None  # searches scan the items
        if m.get("searched_through") == "distinct codes":
            files = ("groups.npy", "group_sizes.npy")
            missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
            if missing:
                raise UserError(f"--index {folder} lacks {' and '.join(missing)} (its manifest says searches go "
                                "through the distinct codes); copy the whole folder, or build it again")
            try:
                order, sizes = (np.load(os.path.join(folder, f)) for f in files)
            except (OSError, ValueError) as e:
                raise UserError(f"--index {folder} is corrupt ({type(e).__name__} reading its grouping); build it "
                                "again") from None
            if order.shape != (n,) or sizes.sum() != n:
                raise UserError(f"--index {folder} is corrupt: its grouping disagrees with its codes; build it again")
            self.groups = Groups(padded, order, sizes)

    def queries(self, packed):
        """Packed queries, padded as the index searches them."""
        return pad(packed, self.width)
