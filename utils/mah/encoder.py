"""A finished MAH run as an image -> code function (utils.models.Encoder), for utils.index."""
import os

from utils.data.datasets import get_dataset
from utils.models import Encoder, MAHNet, build_backbone
from utils.runs import load_checkpoint, load_state, read_json

ADVICE = "give --model a MAH run folder or a train_mmhh.py snapshot"


class MAHEncoder(Encoder):
    """A MAH run folder: the target head of its checkpoint (the length trained last).
    `args` is the run's run.json and `database_codes` its learned V of the target head."""

    def __init__(self, folder, device):
        file = os.path.join(folder, "checkpoint.pt")
        args = read_json(os.path.join(folder, "run.json"), "run record", keys=("arch", "backbone", "dataset", "crop"))
        ckpt = load_checkpoint(file, {"kind": f"MAH-{args['arch']}"}, ADVICE)
        lengths = ckpt["written_by"]["lengths"]
        backbone, features = build_backbone(args["backbone"], False, None)
        model = MAHNet(backbone, features, lengths, cascade=args["arch"] == "cascade")
        load_state(model, ckpt["model"], file, ADVICE)
        info = get_dataset(args["dataset"])  # --mean and --std, where given, replace the table's
        preprocessing = dict(resize=args["resize"], crop=args["crop"], square=False,
                             mean=list(args.get("mean") or info.mean), std=list(args.get("std") or info.std))
        method = "ADSH" if args.get("adsh") else f"MAH-{args['arch']}"  # --adsh: the single-head baseline
        kind = f"{method} ({args['backbone']}, {lengths[0]} bits of {args['dataset']})"
        super().__init__(folder, file, model, lengths[0], preprocessing, kind, device)
        self.args, self.database_codes = args, ckpt["V"][0]

    def forward(self, x):
        return self.model(x)[0]  # the target head


def load_encoder(folder, device):
    """The Encoder of the MAH run in `folder`."""
    return MAHEncoder(folder, device)
