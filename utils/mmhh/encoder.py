"""A train_mmhh.py snapshot as an image -> code function (utils.models.Encoder), for utils.index."""
from utils.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from utils.mmhh import common
from utils.models import Encoder
from utils.runs import load_checkpoint, load_state

ADVICE = "give --model a MAH run folder or a train_mmhh.py snapshot"


def load_encoder(path, device):
    """The sign of the hash layer's output of the snapshot at `path` (with or without .pt)."""
    file = common.snapshot_path(path, "--model")
    ckpt = load_checkpoint(file, {"kind": "train_mmhh.py model"}, ADVICE)
    args = ckpt["args"]
    model = common.build_network(args["image_network"], args["hash_bit"], pretrained=False)
    load_state(model, ckpt["model"], file, ADVICE)
    # the released code normalised every data set with ImageNet's statistics (see common.feeders)
    preprocessing = dict(resize=args["resize"], crop=args["crop"], square=True, mean=list(IMAGENET_MEAN),
                         std=list(IMAGENET_STD))
    loss = {"MMHH": "MMHH loss", "Hamming": "HashNet loss"}[args["distance_type"]]  # the report's names
    kind = f"{loss} ({args['image_network']}, {args['hash_bit']} bits of {args['s_dataset']}, train_mmhh.py)"
    return Encoder(file, file, model, args["hash_bit"], preprocessing, kind, device)
