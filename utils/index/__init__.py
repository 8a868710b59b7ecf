"""Search with the learned codes: encode images with a trained model, index their codes, and
look up the top k by Hamming distance or every item within a radius.

    python -m utils.index build --model runs/x --images photos/ --out photos.index
    python -m utils.index search --index photos.index --query me.jpg --topk 10 --show me.png
    python -m utils.index info --index photos.index

The model is a MAH run folder (its checkpoint's target head: sign of the network's output)
or a train_mmhh.py snapshot. `build --from-run` exports a MAH run's learned database codes
V as they are, the codes the paper's asymmetric retrieval searches.

The index folder holds `codes.npy` (the codes packed 8 bits to a byte, K/8 bytes an item,
lengths padded to a multiple of 8 with zero bits, which add no distance), `items.json`
(item names: image paths, or rows of a data set's array), `labels.npy` where labels are
known, `manifest.json` (bits, model and its sha256, preprocessing, the structure chosen and
why, how top k searches, commit, date), where `build` chose one, `index.faiss`, the lookup
structure, and where searches go through the distinct codes, `groups.npy` (the item ids by
code) and `group_sizes.npy` (items a code).

Searches are exact. Codes are searched zero-padded to a width FAISS has a fast kernel for.
Radius r: the lookup structure up to the radius its cost model chose it for, else the
padded flat scan, of the distinct codes where the items repeat them (trained codes do); top
k: through the distinct codes likewise, else the ball within a radius sized on a sample of
the codes; ties by item id (structures.py says how).

Modules: encode (models, images, codes), structures (packing, padding, the structures, the
cost model, lookups), folder (the index folder), build, search (search and info), show
(--show), cli (options and main).
"""
from utils.index.cli import get_args_parser, main
from utils.index.encode import encode_files, image_files, load_encoder, network_input, read_image, transform_of
from utils.index.folder import Index, write_index
from utils.index.structures import (SCAN, Groups, Scan, choose, flat_index, grouped, new_structure, pack, pad,
                                    scan_width, substrings, top_k, within)

__all__ = ["SCAN", "Groups", "Index", "Scan", "choose", "encode_files", "flat_index",
           "get_args_parser", "grouped", "image_files", "load_encoder", "main", "network_input", "new_structure",
           "pack", "pad", "read_image", "scan_width", "substrings", "top_k", "transform_of", "within", "write_index"]
