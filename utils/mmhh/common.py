"""What training and testing an MMHH network share: the network, the feeders of its input
pipeline, encoding, the data of a run, and what its checkpoints say of their writer.

Callers look `build_network` and `feeders` up on this module when they call them, so that
one replacement (a test's smaller network) serves training and testing alike.
"""
import os

import torch

from utils.data import protocols
from utils.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from utils.data.feeder import Feeder
from utils.data.loader import load_data
from utils.errors import UserError
from utils.mmhh.args import default_protocol
from utils.models import NETWORKS, HashModel, build_backbone, forward_batches


def build_network(name, bits, pretrained, weights=None, seed=0):
    """The hash network of --image_network `name` with `bits` outputs."""
    torch.manual_seed(seed)  # the initialisation comes from --seed
    backbone, features = build_backbone(NETWORKS[name], pretrained, weights)
    return HashModel(backbone, features, bits)


def feeders(data, part, device, args, train=False):
    # ImageNet's mean and std for every data set, as the released code normalised (the
    # table's constants for NUS-WIDE and FLICKR are MAH's)
    return Feeder(data, part, device, train, args.resize, args.crop, augment=args.augment, workers=args.workers,
                  square=True, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def encode(model, feeder, order, batch_size):
    """Continuous outputs (len(order) x K) of the feeder's items `order`, in eval mode."""
    return torch.cat(forward_batches(model, feeder.batches(order, batch_size))).float()


def data_for(name, settings, run_dir):
    """(data, training labels, protocol record) of the data set `name` with the data options in
    `settings` (a dict of the train flags): under --eval_on val the validation split of its
    training part, under --protocol unseen its unseen-classes parts, under --label_noise its
    training labels corrupted (utils.data.protocols); the split saved in run_dir (when given) is
    reused. The record says which split is tested (eval_on); under val it holds the validation
    split (validation_split) for split.json."""
    protocol, seed = settings.get("protocol") or "deephash", settings.get("seed", 0)
    split_file = os.path.join(run_dir, "split.json") if run_dir else None
    data = load_data(name, settings.get("data_root"), settings.get("image_root"), settings.get("path_prefix"),
                     protocols.split_protocol(protocol, default_protocol(name)), seed, split_file=split_file,
                     missing=settings.get("missing_images") or "error", settings=settings)
    validation = None
    if settings.get("eval_on") == "val":  # carved before the protocols, which then apply to its parts
        data, validation = protocols.validation(data, seed, split_file)
    data, _, labels, record = protocols.prepare(data, protocol, settings.get("seen_fraction", 0.75),
                                                settings.get("label_noise", 0.0), seed, "train")
    record["eval_on"] = "test" if validation is None else "val"
    if validation is not None:
        record["validation_split"] = validation
    return data, labels, record


def writer(args):
    """What a checkpoint or snapshot records of its writer, checked before its state is used."""
    return {"kind": "train_mmhh.py model", "hash_bit": args.hash_bit, "image_network": args.image_network}


def snapshot_path(path, option="--model_path"):
    """The snapshot file, given with or without its .pt suffix."""
    for candidate in (path, path + ".pt"):
        if os.path.isfile(candidate):
            return candidate
    raise UserError(f"no snapshot at {path} (nor {path}.pt); give {option} of a file train_mmhh.py wrote "
                    "under --snap_path")
