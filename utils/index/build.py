"""`python -m utils.index build`: encode images (or export a MAH run's database codes) into an
index folder."""
import datetime
import os
import sys

from utils.data.labels import item_names
from utils.data.loader import load_data
from utils.errors import PROGRESS, UserError
from utils.index.encode import encode_files, encode_part, image_files, load_encoder
from utils.index.folder import check_out, write_index
from utils.mah.encoder import MAHEncoder
from utils.runs import choose_device, git_commit


def build(args):
    check_out(args.out)  # before any work, so that a taken folder costs nothing
    PROGRESS.reset()
    PROGRESS.update(where=f"building the index {args.out} (nothing was written)")
    device = choose_device(args.gpu)
    encoder = load_encoder(args.model, device)
    base = {"model": encoder.path, "model_file": encoder.file, "model_sha256": encoder.sha256,
            "model_kind": encoder.kind, "preprocessing": encoder.preprocessing, "commit": git_commit(),
            "date": datetime.date.today().isoformat()}
    if args.from_run:
        if not isinstance(encoder, MAHEncoder):
            raise UserError("--from-run exports a MAH run's database codes V; --model is a train_mmhh.py snapshot")
        a = encoder.args
        data = load_data(a["dataset"], a.get("data_root"), a.get("image_root"), a.get("path_prefix"),
                         a.get("protocol", "dpsh"), a.get("seed", 0), split_file=os.path.join(args.model, "split.json"),
                         missing=a.get("missing_images", "error"))
        codes, names, labels = encoder.database_codes.numpy(), item_names(data, "database", a.get("data_root")), \
            data.database.labels
        base.update(codes="the run's database codes V (target head)", source="database", dataset=data.info.name,
                    data_root=a.get("data_root"))
    elif not os.path.exists(args.images) and ":" in args.images:  # DATASET:PART of the data layer
        dataset, part = args.images.split(":", 1)
        if part not in ("query", "database", "train"):
            raise UserError(f"--images {args.images}: the part must be query, database or train")
        data = load_data(dataset, args.data_root, seed=args.seed)
        codes = encode_part(encoder, data, part, args.batch_size, args.workers).numpy()
        names, labels = item_names(data, part, args.data_root), getattr(data, part).labels
        base.update(codes="the network's", source=args.images, dataset=data.info.name,
                    data_root=args.data_root and os.path.abspath(args.data_root))
    else:
        names, paths, labels = image_files(args.images)
        codes = encode_files(encoder, paths, args.batch_size, args.workers).numpy()
        root = args.images if os.path.isdir(args.images) else os.path.dirname(args.images)
        base.update(codes="the network's", source=os.path.abspath(args.images), image_root=os.path.abspath(root))
    manifest = write_index(args.out, codes, names, labels, base, args.structure)
    n, distinct, common = manifest["items"], manifest["distinct_codes"], manifest["most_common_code_items"]
    if n > 1 and 2 * common > n:
        print(f"warning: the codes collapsed: {common} of the {n} items share one code ({distinct} distinct code"
              f"{'s' * (distinct != 1)} in all), so search cannot tell them apart; the model may not have learned "
              "(check its training)", file=sys.stderr)
    described = manifest["structure"]
    print(f"wrote {args.out}: {n} items, {manifest['bits']} bits, {distinct} distinct codes; {described['reason']}")
    return manifest
