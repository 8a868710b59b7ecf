"""The options of `python -m utils.index` and its main."""
from utils import options
from utils.errors import UserError
from utils.index.build import build
from utils.index.search import info, search


def get_args_parser():
    p = options.Parser(prog="python -m utils.index", description="Encode images with a trained model, index the "
                                                                   "codes, search the index")
    sub = p.add_subparsers(dest="command", required=True, metavar="{build,search,info}")
    b = sub.add_parser("build", help="encode images (or export a MAH run's database codes) into an index folder")
    b.add_argument("--model", required=True, help="a MAH run folder or a train_mmhh.py snapshot (required)")
    b.add_argument("--images", help="a folder tree of images, a list file, or DATASET:PART of the data layer, e.g. "
                                    "cifar10:database with --data-root (default: none; needed without --from-run)")
    b.add_argument("--from-run", action="store_true", help="export the MAH run's learned database codes V, with the "
                                                           "database's item names and labels (default: off)")
    b.add_argument("--out", required=True, help="the index folder to write; must be new or empty (required)")
    b.add_argument("--structure", default="auto", choices=("auto", "scan", "mih"),
                   help="radius search by a lookup structure (mih: multi-index hashing, or one hash table up to 16 "
                        "bits) or by scanning the codes; auto: the structure only at the radii where a cost model of "
                        "the codes says it is faster (default: auto)")
    b.add_argument("--data-root", help="where DATASET's data is, for --images DATASET:PART (default: none)")
    b.add_argument("--seed", type=options.seed, default=0, help="seed of DATASET's split (default: 0)")
    b.add_argument("--batch-size", type=options.positive_int, default=64, help="images per batch (default: 64)")
    b.add_argument("--workers", type=options.nonnegative_int, help="image-decoding worker processes (default: the "
                                                                    "cores, at most 4; with the model on the CPU at "
                                                                    "the lowest priority)")
    b.add_argument("--gpu", default="0", help="CUDA device number, or 'cpu' (default: 0; the CPU without CUDA)")
    s = sub.add_parser("search", help="the top k or the Hamming ball of query images or items")
    s.add_argument("--index", required=True, help="an index folder written by build (required)")
    q = s.add_mutually_exclusive_group(required=True)
    q.add_argument("--query", nargs="+", help="query images, encoded with the index's model (default: none)")
    q.add_argument("--item", nargs="+", type=options.nonnegative_int, help="query with items of the index, by id "
                                                                           "(default: none)")
    s.add_argument("--topk", type=options.positive_int, help="the k nearest, ties by item id (default: 10 without "
                                                             "--radius; with it, all of the ball)")
    s.add_argument("--radius", type=options.nonnegative_int, help="every item at Hamming distance <= this, ranked by "
                                                                  "(distance, id) (default: none: top k)")
    s.add_argument("--show", help="also draw each query and its first 10 results into this new PNG file (default: "
                                  "none)")
    s.add_argument("--image-root", help="where the index's relative item paths start, for --show (default: the "
                                        "folder the index was built from)")
    s.add_argument("--gpu", default="0", help="CUDA device number, or 'cpu' (default: 0; the CPU without CUDA)")
    i = sub.add_parser("info", help="what an index holds, and why it searches as it does")
    i.add_argument("--index", required=True, help="an index folder written by build (required)")
    return p


def main(args):
    if args.command == "build" and not args.from_run and not args.images:
        raise UserError("build needs --images (a folder, a list file or DATASET:PART), or --from-run")
    return {"build": build, "search": search, "info": info}[args.command](args)
