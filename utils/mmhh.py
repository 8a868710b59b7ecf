"""MMHH (Kang et al., ICCV 2019): the parsers and main() of train_mmhh.py and test_mmhh.py.

Flag names and defaults are the released code's (spec MMHH.md), so its command lines
run unchanged; every flag also has a hyphenated spelling. Training: a backbone and one
hash layer, a pair loss (HashNet's, "Hamming", the released default; or MMHH's) against
the batch itself or against a memory of the whole training set, plus DHN's quantization.
At the end a snapshot is written and tested, and the continuous outputs and labels of the
test are saved as .npy files where the released code saved them; test_mmhh.py tests a
snapshot again, on its own.
"""
import argparse
import os
import shlex
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from utils import distributed, metrics, options, retrieval
from utils.data import protocols
from utils.atomic import atomic_write
from utils.data.feeder import Feeder
from utils.data.loader import load_data
from utils.data.datasets import IMAGENET_MEAN, IMAGENET_STD, get_dataset
from utils.errors import PROGRESS, UserError, one_line
from utils.data.labels import label_matrix, similarity
from utils.losses import hashnet_loss, mmhh_loss, parse_margin_params, quantization_loss, similar_weight
from utils.memory import Memory
from utils.models import NETWORKS, HashModel, build_backbone
from utils.optim import FIXED_LR_SCHEDULES, RELEASED_LR, SCHEDULES, build_optimizer, learning_rate, \
    set_learning_rate, weight_decay
from utils.options import Parser, check_resumed, nonnegative_float, nonnegative_int, positive_float
from utils.runs import REPO, JsonLog, RunFolder, check_device, check_finite, choose_device, command_line, device_name, \
    git_commit, load_checkpoint, load_state, make_folder, read_json, save_checkpoint, write_json
from utils.records import thread_counts

# The released code's defaults of the options that presets change or resolve() may override
# (a None in the parser stands for "not given", so an override can say what it replaced).
ORIGINAL = dict(image_network="AlexNetFc", pretrained=True, resize=256, crop=224, augment=True, optimizer="sgd",
                batch_size=48, num_iters=1000, lr=RELEASED_LR, lr_schedule_type="Stair_Step", decay_step=200,
                weight_decay=0.1, loss_lambda=0.1)
PRESETS = {
    "paper": {},
    # the small convnet from scratch on 32x32 arrays: Adam, a stronger lr and a plain weight decay
    "cpu-small": dict(image_network="SmallFc", pretrained=False, resize=32, crop=32, optimizer="adam", batch_size=64,
                      num_iters=5000, lr=1e-3, decay_step=2000, weight_decay=5e-4),
    # MAH's cpu-pretrained, for MMHH: ImageNet MobileNetV2 at 64 px and Adam at 1e-4 (what learned
    # within the budget for MAH), the lr halved once at iteration 1000 of 2000, the released batch and crops
    "cpu-pretrained": dict(image_network="MobileNetV2Fc", pretrained=True, resize=64, crop=64, optimizer="adam",
                           num_iters=2000, lr=1e-4, decay_step=1000, weight_decay=5e-4),
    "smoke": dict(image_network="SmallFc", pretrained=False, resize=32, crop=32, augment=False, batch_size=8,
                  num_iters=3, lr=1e-3, weight_decay=5e-4),
}


def _bool(text):
    if str(text).lower() in ("1", "true", "yes", "y"):
        return True
    if str(text).lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _add(p, name, *aliases, **kw):
    """An option under its original name, its hyphenated spelling and any aliases."""
    names = [name] + ([name.replace("_", "-")] if "_" in name else []) + list(aliases)
    p.add_argument(*dict.fromkeys(names), dest=kw.pop("dest", name[2:].replace("-", "_")), **kw)


def _common(p):
    _add(p, "--gpu_id", default="0", help="CUDA device number, or 'cpu' (default: 0; the CPU when there is no CUDA)")
    _add(p, "--data_root", help="where the data set is: list files, or CIFAR-10 in any form (see data/README.md) "
                                "(default: none; not needed for digits)")
    _add(p, "--image_root", help="where relative image paths of list files start (default: --data_root)")
    _add(p, "--path_prefix", help="OLD=NEW: rewrite absolute image paths of old list files (default: none)")
    _add(p, "--workers", type=nonnegative_int, default=4, help="DataLoader workers for list-file data (default: 4)")
    _add(p, "--missing_images", choices=("error", "drop"),
         help="list rows whose image file is absent: stop with the count and the first one, or leave them out and "
              "record how many in split.json (default: error; test_mmhh.py: the snapshot's)")
    _add(p, "--opt-test", "--opt_test", nargs="?", const=True, default=False, type=_bool,
         help="the original's 'optimised' metric conventions: a query with an empty Hamming ball is left out of "
              "MAP, precision and recall, a ball without relevant items counts AP 0; MAP@TopK divides by all "
              "queries (default: False = DeepHash/HashNet's: an empty ball counts 0 in all three, a ball without "
              "relevant items is left out of MAP, queries without hits are left out of MAP@TopK)")
    _add(p, "--rank_by", choices=("scores", "signs"), default="scores",
         help="order inside the Hamming ball and for MAP@TopK: continuous outputs q.v (as MMHH did) or Hamming "
              "distance of the signs, ties by index (as HashNet did) (default: scores)")


def get_train_parser():
    p = Parser(description="Train MMHH's hashing network with HashNet's pair loss (the released default) or the MMHH "
                           "loss (--distance_type MMHH)")
    _common(p)
    _add(p, "--s_dataset", default="cifar10", help="training data set: coco_80, nuswide_21, nuswide_81, imagenet100, "
                                                   "cifar10, digits, ... (default: cifar10)")
    _add(p, "--t_dataset", default="", help="data set to test on (default: --s_dataset)")
    _add(p, "--t_data_root", help="where --t_dataset's data is (default: --data_root when --t_dataset is "
                                  "--s_dataset; needed otherwise, except for digits)")
    _add(p, "--t_image_root", help="where relative image paths of --t_dataset's list files start (default: "
                                   "--image_root when --t_dataset is --s_dataset and --t_data_root is not given, "
                                   "else --t_data_root)")
    _add(p, "--preset", default="paper", choices=sorted(PRESETS),
         help="paper = the released code's defaults; cpu-pretrained = ImageNet MobileNetV2 at 64 px with Adam "
              "for 2,000 iterations, about 5 minutes on 2 cores; cpu-small = small convnet from scratch on 32x32 "
              "images in minutes on a CPU; smoke = seconds, for tests (default: paper)")
    _add(p, "--batch_size", type=int,
         help="images per batch, all processes together under torchrun (default: 48; cpu-small 64)")
    _add(p, "--snap_path", default=os.path.join(REPO, "snapshot", "hash"),
         help="folder of the final snapshot (default: snapshot/hash/ in the repository)")
    _add(p, "--hash_bit", type=int, default=48, help="code length K (default: 48)")
    _add(p, "--lr", type=positive_float, help="learning rate of the backbone; the hash layer gets 10x (default: 3e-4; "
                                     "cpu-small 1e-3, cpu-pretrained 1e-4; HashNet_Step and DANN_INV always start "
                                     "at 3e-4, as released)")
    _add(p, "--annotation", default="empty", help="run name, part of the snapshot and log names (default: empty)")
    _add(p, "--loss_lambda", type=nonnegative_float, help="weight of the quantization loss; 0 allowed (default: 0.1; always 0 "
                                              "with --image_loss_type HashNet, as released)")
    _add(p, "--num_iters", type=int, help="training iterations (default: 1000; cpu-small 5000, cpu-pretrained 2000)")
    _add(p, "--pre_model_path", default="", help="start from this snapshot's model weights (default: none)")
    _add(p, "--image_network", help=f"{', '.join(NETWORKS)} (default: AlexNetFc; cpu-small SmallFc, "
                                    "cpu-pretrained MobileNetV2Fc)")
    _add(p, "--pretrained", action=argparse.BooleanOptionalAction,
         help="ImageNet weights through torchvision (default: yes, except the small convnet)")
    _add(p, "--weights", help="a local file of the backbone's ImageNet weights, for offline use "
                             "(default: none: torchvision's download; for MobileNetV2Fc offline, the packaged weights)")
    _add(p, "--optimizer", choices=("sgd", "adam"), help="sgd (momentum 0.9, Nesterov, as the original) or adam "
                                                         "(default: sgd; cpu-small and cpu-pretrained adam)")
    _add(p, "--image_loss_type", default="DHN", choices=("DHN", "HashNet"),
         help="HashNet raises the tanh scale every 200 iterations, sqrt(1 + 0.005 t), and sets --loss_lambda to 0; "
              "DHN keeps the scale 1 (default: DHN)")
    _add(p, "--distance_type", default="Hamming", choices=("Hamming", "MMHH"),
         help="pair loss: Hamming = HashNet's pairwise cross-entropy (the released default), or MMHH = the paper's "
              "margin-reweighted Cauchy loss (its README command passes --distance_type MMHH) (default: Hamming)")
    _add(p, "--mission", default="Hashing", help="the released code's task switch; only Hashing was implemented "
                                                 "(default: Hashing)")
    _add(p, "--log_dir", default=os.path.join(REPO, "log"), help="folder of the run folders (default: log/ in the "
                                                                  "repository)")
    _add(p, "--lr_schedule_type", choices=SCHEDULES,
         help="learning-rate schedule: Stair_Step halves --lr every --decay_step; HashNet_Step halves 3e-4 every "
              "2000 iterations; DANN_INV is 3e-4 (1 + 3e-4 t)^-0.75 (default: Stair_Step)")
    _add(p, "--gamma", type=positive_float, default=1.0, help="scale > 0 of the Cauchy kernel of the MMHH loss "
                                                             "(default: 1.0)")
    _add(p, "--sigmoid_param", type=positive_float, default=1.0, help="x = sigmoid_param <h_i, h_j> of the Hamming loss "
                                                             "(default: 1.0)")
    _add(p, "--radius", type=int, default=0, help="evaluation: 0 reports MAP@TopK with the data set's R, r > 0 "
                                                  "MAP@H<=r (default: 0)")
    _add(p, "--decay_step", type=int, help="Stair_Step halves the lr every this many iterations (default: 200; "
                                           "cpu-small 2000, cpu-pretrained 1000)")
    _add(p, "--weight_decay", type=nonnegative_float, help="weight decay of Stair_Step (default: 0.1; cpu-small and "
                                               "cpu-pretrained 5e-4); the other schedules use 5e-4")
    _add(p, "--similar_weight_type", "--similar_weight", "--similar-weight", default="config",
         help="weight of similar pairs: a number, 'config' (the data set's: COCO 1, NUS-WIDE 5, others 1) or "
              "'auto' (dissimilar / similar pairs of each pair matrix) (default: config)")
    _add(p, "--norm_memory_batch", action="store_true", help="L2-normalise memory rows (default: off)")
    _add(p, "--batch_type", default="PairBatch", choices=("PairBatch", "BatchInitMem"),
         help="pairs within the batch, or batch x memory of the training set after a warm-up (default: PairBatch)")
    _add(p, "--batch_params", default="300", help="warm-up iterations of BatchInitMem (default: 300)")
    _add(p, "--semi_init_type", default="MODEL", choices=("MODEL", "RANDOM"),
         help="memory start: the model's outputs or randn (default: MODEL)")
    _add(p, "--semi_init_momentum", type=options.unit_interval, default=0.5, help="beta0 of the memory momentum (default: 0.5)")
    _add(p, "--margin_params", default="0.5:0.8:1.0:1.0:2.0",
         help="sim_in:dis_in:sim_out:dis_out:margin of the MMHH reweighting (default: 0.5:0.8:1.0:1.0:2.0)")
    _add(p, "--test_sample_ratio", type=float, default=0.1, help="fraction of queries and database (seeded) tested "
                                                                 "at the end (default: 0.1)")
    _add(p, "--test_output_dir", default=os.path.join(REPO, "test_output"),
         help="the end-of-training test's continuous outputs and labels go to <this>/<annotation>_iter_<num_iters, 5 "
              "digits>/ as test_code.npy, test_labels.npy, database_code.npy, database_labels.npy, where the "
              "released code wrote them (default: test_output/ in the repository)")
    _add(p, "--fake_cpu_demo", default="False",
         help="True trains and tests on the embedded digits data set instead of --s_dataset and --t_dataset (the "
              "released code used a toy image list) (default: False)")
    _add(p, "--snapshot_interval", type=int, default=1000,
         help="parsed and unused, as in the released code: the snapshot is written at the end, checkpoints at every "
              "epoch end (default: 1000)")
    _add(p, "--protocol", help="split of array data sets: deephash (DeepHash/HashNet's: 100 queries and 500 "
                                "training images per class), dpsh or full; or unseen: the default split with "
                                "retrieval among classes never trained on (docs/protocols.md) (default: deephash "
                                "where the data set has it, else its own)")
    _add(p, "--seen_fraction", type=options.open_fraction, default=0.75,
         help="--protocol unseen: the share of the classes seen in training, rounded (default: 0.75)")
    _add(p, "--label_noise", type=options.rate, default=0.0,
         help="the share of the training images whose labels are replaced by those of an image sharing no label "
              "with them, seeded; queries and database keep theirs (docs/protocols.md) (default: 0)")
    _add(p, "--seed", type=options.seed, default=0, help="seed of the split, batches, augmentation, init and test "
                                                         "sample (default: 0)")
    _add(p, "--log_every", type=int, default=50, help="iterations per log line (default: 50)")
    _add(p, "--resume", action="store_true",
         help="continue the run of this --log_dir, --annotation and data sets from its last checkpoint (written at the "
              "end of every epoch), with its own arguments; only --gpu_id, --workers and --tensorboard may be given "
              "beside it (default: off, a new run)")
    _add(p, "--overwrite", action="store_true",
         help="let a new run replace the run of its annotation: that run's files are removed once this run's inputs "
              "are checked, its snapshot and test outputs replaced (default: off: a folder that holds a run is "
              "refused)")
    _add(p, "--tensorboard", action="store_true", help="also log to TensorBoard, which needs the tensorboard "
                                                       "package (default: off)")
    return p


def get_test_parser():
    p = Parser(description="Test an MMHH snapshot")
    _common(p)
    _add(p, "--dataset", help="data set to test on (default: the snapshot's)")
    _add(p, "--batch_size", type=options.positive_int, default=16, help="images per batch (default: 16)")
    _add(p, "--output_path", help="save codes, outputs and labels as .npy files in this folder (default: off)")
    _add(p, "--model_path", required=True, help="the snapshot, with or without its .pt suffix (required)")
    _add(p, "--radius", type=nonnegative_int, default=2, help="0 reports MAP@TopK with the data set's R, r > 0 MAP@H<=r "
                                                  "(default: 2)")
    _add(p, "--annotation", default="empty", help="run name: results go to --log_dir/<annotation>/ (default: empty, "
                                                  "as released)")
    _add(p, "--log_dir", default=os.path.join(REPO, "log"), help="(default: log/ in the repository)")
    _add(p, "--test_sample_ratio", type=options.fraction, default=1.0, help="fraction of queries and database tested "
                                                                "(default: 1.0)")
    _add(p, "--seed", type=options.seed, help="seed of the test sample (default: the snapshot's)")
    return p


# ------------------------------------------------------------------------ options

def resolve(args):
    """Fill unset options from the preset, then from the original's defaults; apply the
    released code's overrides; check them."""
    if args.mission != "Hashing":
        raise UserError(f"--mission {args.mission}: only Hashing was implemented (the released code named the "
                        "other missions but could not train them); drop --mission or pass Hashing")
    if args.fake_cpu_demo not in ("True", "False"):
        raise UserError(f"--fake_cpu_demo must be True or False, got {args.fake_cpu_demo!r}")
    if args.fake_cpu_demo == "True":
        print(f"--fake_cpu_demo True: training and testing on the embedded digits data set instead of "
              f"{args.s_dataset}{'/' + args.t_dataset if args.t_dataset else ''}")
        args.s_dataset, args.t_dataset = "digits", ""
    given = {key: getattr(args, key) for key in ("lr", "loss_lambda") if getattr(args, key) is not None}
    for key, value in ORIGINAL.items():
        if getattr(args, key, None) is None:
            setattr(args, key, PRESETS[args.preset].get(key, value))
    if args.image_network not in NETWORKS:
        raise UserError(f"--image_network {args.image_network!r}: choose from {', '.join(NETWORKS)}")
    if args.image_network == "SmallFc" and args.pretrained and not args.weights:
        args.pretrained = False  # nothing to download for a convnet of this project
    for key in ("hash_bit", "batch_size", "num_iters", "decay_step", "log_every"):
        if getattr(args, key) < 1:
            raise UserError(f"--{key} must be at least 1, got {getattr(args, key)}")
    if args.hash_bit > 4096:
        raise UserError(f"--hash_bit {args.hash_bit}: code lengths must be 1 to 4096")
    if not 0 < args.test_sample_ratio <= 1:
        raise UserError(f"--test_sample_ratio must be in (0, 1], got {args.test_sample_ratio}")
    if args.radius < 0:
        raise UserError(f"--radius must be 0 (MAP@TopK) or a positive Hamming radius, got {args.radius}")
    try:
        parse_margin_params(args.margin_params)
        warmup_iterations(args.batch_params)
    except ValueError as e:
        raise UserError(str(e))
    if args.similar_weight_type not in ("config", "auto"):
        try:
            if float(args.similar_weight_type) <= 0:
                raise ValueError
        except ValueError:
            raise UserError(f"--similar_weight must be a positive number, 'config' or 'auto', got "
                            f"{args.similar_weight_type!r}")
    # the released code's overrides, after the checks of what was given; run.json and the results
    # record the values used
    if args.lr_schedule_type in FIXED_LR_SCHEDULES:
        _override(args, "lr", RELEASED_LR, given, f"--lr_schedule_type {args.lr_schedule_type} starts from lr "
                                                  f"{RELEASED_LR:g} whatever --lr says, as the released code did")
    if args.image_loss_type == "HashNet":
        _override(args, "loss_lambda", 0.0, given, "--image_loss_type HashNet sets the quantization weight to 0, "
                                                   "as the released code did")
    args.t_dataset = args.t_dataset or args.s_dataset
    source, target = get_dataset(args.s_dataset), get_dataset(args.t_dataset)
    if args.t_data_root is None:
        if target.name == source.name:
            args.t_data_root, args.t_image_root = args.data_root, args.t_image_root or args.image_root
        elif target.source != "digits":  # the training set's root holds the training set's lists
            raise UserError(f"--t_dataset {args.t_dataset} is not --s_dataset {args.s_dataset}: give --t_data_root, "
                            f"where {target.name}'s data is")
    if args.protocol is None:
        args.protocol = default_protocol(args.s_dataset)
    return args


def _override(args, key, value, given, why):
    """Set args.key to `value`; one notice line on stderr when the user gave another value."""
    if key in given and given[key] != value:
        print(f"notice: {why}; --{key} {given[key]:g} is not used", file=sys.stderr)
    setattr(args, key, value)


def warmup_iterations(batch_params):
    """BatchInitMem's warm-up: the first field of --batch_params ('300', or '300:...')."""
    try:
        return int(str(batch_params).split(":")[0])
    except ValueError:
        raise ValueError(f"--batch_params must start with an integer, got {batch_params!r}")


def continuation_scale(t):
    """HashNet's tanh scale at iteration t: raised to sqrt(1 + 0.005 f) at every 200th forward f."""
    return (1 + 0.005 * 200 * ((t + 1) // 200)) ** 0.5


def build_network(name, bits, pretrained, weights=None, seed=0):
    torch.manual_seed(seed)  # the initialisation comes from --seed
    backbone, features = build_backbone(NETWORKS[name], pretrained, weights)
    return HashModel(backbone, features, bits)


def feeders(data, part, device, args, train=False):
    # ImageNet's mean and std for every data set, as the released code normalised (the
    # table's constants for NUS-WIDE and FLICKR are MAH's)
    return Feeder(data, part, device, train, args.resize, args.crop, augment=args.augment, workers=args.workers,
                  square=True, mean=IMAGENET_MEAN, std=IMAGENET_STD)


# ------------------------------------------------------------------------- testing

@torch.no_grad()
def encode(model, feeder, order, batch_size):
    """Continuous outputs (len(order) x K) of the feeder's items `order`, in eval mode."""
    model.eval()
    out = [model(x.contiguous(memory_format=torch.channels_last)) for _, x in feeder.batches(order, batch_size)]
    model.train()
    return torch.cat(out).float()


def sample_indices(n, ratio, rng):
    """A seeded sorted subset of round(ratio * n) of range(n) (at least one)."""
    if ratio >= 1:
        return np.arange(n)
    return np.sort(rng.permutation(n)[:max(1, round(ratio * n))])


def test_model(model, data, device, args, ratio, seed, radius, batch_size):
    """Metrics of the model on a seeded `ratio` of the queries and the database, and the arrays tested."""
    rng = np.random.default_rng([seed, 1])
    q_idx, d_idx = sample_indices(len(data.query.labels), ratio, rng), sample_indices(len(data.database.labels),
                                                                                     ratio, rng)
    q_out = encode(model, feeders(data, "query", device, args), q_idx, batch_size)  # Q x K
    d_out = encode(model, feeders(data, "database", device, args), d_idx, batch_size)  # N x K
    if not (torch.isfinite(q_out).all() and torch.isfinite(d_out).all()):
        raise UserError("the model's outputs are not finite (the training diverged): train again with a lower --lr")
    q_codes, d_codes = torch.where(q_out >= 0, 1.0, -1.0), torch.where(d_out >= 0, 1.0, -1.0)
    ql, dl = data.query.labels[q_idx], data.database.labels[d_idx]
    scores = dict(query_scores=q_out, db_scores=d_out) if args.rank_by == "scores" else {}
    opt = bool(args.opt_test)
    r = radius if radius > 0 else 2
    # the released metrics' conventions for degenerate queries (METRICS.md): the "optimised" one
    # leaves a query with an empty ball out of all three numbers, the default counts it 0
    conventions = dict(empty_ball="skip", no_relevant="zero", pr_average="nonempty") if opt else \
        dict(empty_ball="zero", no_relevant="skip", pr_average="all")
    ball = metrics.map_within_radius(q_codes, d_codes, ql, dl, r, **scores, **conventions)
    topk = data.info.topk
    map_topk = metrics.mean_average_precision(q_codes, d_codes, ql, dl, topk=None if topk < 0 else topk,
                                              empty="zero" if opt else "skip", **scores)
    result = {"pr_by_radius": retrieval.pr_curve(q_codes, d_codes, ql, dl), "map_within_radius": ball["map"], "precision_within_radius": ball["precision"],
              "recall_within_radius": ball["recall"], "radius": r, "map_topk": map_topk, "topk": topk,
              "opt_test": opt, **conventions, "rank_by": args.rank_by, "queries": len(q_idx),
              "database": len(d_idx), "balls": retrieval.ball_statistics(q_codes, d_codes, r)}
    arrays = {"query_codes": q_codes, "query_outputs": q_out, "query_labels": ql,
              "database_codes": d_codes, "database_outputs": d_out, "database_labels": dl}
    return result, arrays


def report(result, radius):
    """The original's headline: MAP@H<=radius with precision and recall, or MAP@TopK."""
    if radius > 0:
        print(f"MAP@H<={result['radius']}: {result['map_within_radius']:.4f}  precision "
              f"{result['precision_within_radius']:.4f}  recall {result['recall_within_radius']:.4f}")
    else:
        k = "full ranking" if result["topk"] < 0 else result["topk"]
        print(f"MAP@TopK ({k}): {result['map_topk']:.4f}")


def save_test_output(folder, arrays, classes):
    """The released code's end-of-training files: the continuous outputs (before sign) of the
    tested queries and database as test_code.npy / database_code.npy (Q x K, N x K float32)
    and their labels as test_labels.npy / database_labels.npy (Q x C, N x C float32 multi-hot;
    class ids become one-hot rows, the only layout its metrics could read)."""
    os.makedirs(folder, exist_ok=True)
    files = {"test_code": arrays["query_outputs"], "database_code": arrays["database_outputs"],
             "test_labels": label_matrix(arrays["query_labels"], classes, "cpu"),
             "database_labels": label_matrix(arrays["database_labels"], classes, "cpu")}
    for name, value in files.items():
        value = value.detach().cpu().float().numpy()
        atomic_write(os.path.join(folder, f"{name}.npy"), lambda f: np.save(f, value))


def results_record(data, args, result, seconds, device, bits, protocol):
    """The results file of a test; `protocol`: the run's protocol record (utils.protocols.prepare)."""
    method = "MMHH" if args.distance_type == "MMHH" else "Hamming"
    return {"paper": "MMHH", "dataset": data.info.name, "method": method, "bits": bits, "preset": args.preset,
            "backbone": args.image_network, "seed": args.seed, "metrics": result, "seconds": round(seconds, 1),
            "device": device_name(device), "git_commit": git_commit(), "command": command_line(),
            "args": options.public(args), "threads": thread_counts(), "protocol": protocols.summary(protocol)}


def target_settings(settings):
    """The train flags `settings` with the data roots of the data set tested (--t_data_root,
    --t_image_root) in place of the training set's."""
    return {**settings, "data_root": settings["t_data_root"], "image_root": settings["t_image_root"]}


def default_protocol(dataset):
    """DeepHash/HashNet's split where the data set has it, else its own first."""
    available = get_dataset(dataset).protocols
    return "deephash" if "deephash" in available or not available else available[0]


def data_for(name, settings, run_dir):
    """(data, training labels, protocol record) of the data set `name` with the data options in
    `settings` (a dict of the train flags): under --protocol unseen its unseen-classes parts,
    under --label_noise its training labels corrupted (utils.protocols); array data sets reuse
    the split saved in run_dir (when given)."""
    protocol = settings.get("protocol") or "deephash"
    data = load_data(name, settings.get("data_root"), settings.get("image_root"), settings.get("path_prefix"),
                     protocols.split_protocol(protocol, default_protocol(name)), settings.get("seed", 0),
                     split_file=os.path.join(run_dir, "split.json") if run_dir else None,
                     missing=settings.get("missing_images") or "error")
    data, _, labels, record = protocols.prepare(data, protocol, settings.get("seen_fraction", 0.75),
                                                settings.get("label_noise", 0.0), settings.get("seed", 0), "train")
    return data, labels, record


# ------------------------------------------------------------------------- training

def train_one_step(args, t, model, opt, memory, x, L1, index, margins, similar_weight_default):
    """Iteration t on the batch x (b images, labels L1: b x C, training-set rows index): the
    schedules, the pair and quantization losses, one optimizer step, the memory update.
    Returns the learning rate, the similar weight and [pair, quantization, total] losses.

    Under torchrun x is this process's share of the batch: the batch's outputs and labels are
    gathered (the second operand of the pair loss and the memory update see all of them), the
    similar weight and the losses' normalisers are the whole batch's, and each process's loss
    is weighted so that DDP's average of the gradients is the gradient of the whole loss."""
    lr = learning_rate(args.lr_schedule_type, t, args.lr, args.decay_step)
    set_learning_rate(opt, lr)
    if args.image_loss_type == "HashNet":
        distributed.unwrap(model).scale.fill_(continuation_scale(t))
    h = model(x.contiguous(memory_format=torch.channels_last))  # b x K
    h_all, L1_all = distributed.gather_batch(h), distributed.gather_batch(L1)  # B x K, B x C
    H2, L2 = memory.operand(t, h_all, L1_all) if memory is not None else (h_all, L1_all)
    S = similarity(L1, L2)  # b x B or b x N: this share's rows
    S_all = S if S.shape[0] == len(L1_all) else similarity(L1_all, L2)  # the whole pair matrix
    w_s = similar_weight(args.similar_weight_type, S_all, similar_weight_default)
    processes = distributed.world_size()
    if args.distance_type == "MMHH":  # a mean over the pairs
        pair = mmhh_loss(h, H2, S, args.gamma, margins, w_s)
        pair_weight = processes * S.numel() / S_all.numel()
    else:  # normalised by the pairs' total weight
        pair = hashnet_loss(h, H2, S, args.sigmoid_param, w_s)
        pair_weight = processes * float(w_s * S.sum() + (S.numel() - S.sum())) / \
            float(w_s * S_all.sum() + (S_all.numel() - S_all.sum()))
    quant = quantization_loss(h)  # a mean over the rows
    quant_weight = processes * len(h) / len(h_all)
    loss = pair_weight * pair + args.loss_lambda * quant_weight * quant
    if not torch.isfinite(loss):
        raise UserError(f"the loss became {loss.item()} at iteration {t}; lower --lr (now {lr:g})")
    opt.zero_grad()
    loss.backward()
    opt.step()
    if memory is not None:
        memory.update(t, distributed.gather_batch(index), h_all)
    # the whole batch's losses: each process's weighted share, summed
    parts = torch.stack([pair_weight * pair.detach(), quant_weight * quant.detach(), loss.detach()]) / processes
    return lr, w_s, distributed.sum_(parts).tolist()


def train_main(args):
    device = distributed.setup(args.gpu_id)  # under torchrun (README "Several GPUs"); None in one process
    try:
        return _train_main(args, device)
    finally:
        distributed.cleanup()


def run_name(args):
    """<annotation>_<s_dataset>_<t_dataset>: the run's folder under --log_dir, as the released
    code named its logs (also before resolve(): --fake_cpu_demo and an empty --t_dataset)."""
    source = "digits" if str(args.fake_cpu_demo) == "True" else args.s_dataset
    return f"{args.annotation}_{source}_{(args.t_dataset if source == args.s_dataset else '') or source}"


def writer(args):
    """What a checkpoint or snapshot records of its writer, checked before its state is used."""
    return {"kind": "train_mmhh.py model", "hash_bit": args.hash_bit, "image_network": args.image_network}


# Options that may differ from the run's when it is resumed: where it computes, not what.
RESUME_MAY_CHANGE = ("resume", "gpu_id", "workers", "tensorboard")


def resumed(args):
    """The arguments of the run that --log_dir, --annotation, --s_dataset and --t_dataset name
    (its run.json), after checking that every option given beside --resume is the run's."""
    record = os.path.join(args.log_dir, run_name(args), "run.json")
    if not os.path.exists(record):
        raise UserError(f"--resume: {os.path.dirname(record)} holds no run (no run.json); run without --resume to "
                        "start this run, or give the --log_dir, --annotation and data sets of the run")
    saved = read_json(record, "run record")
    if saved.get("kind") == "MAH" or "arch" in saved:
        raise UserError(f"{os.path.dirname(record)} holds a MAH run; continue it with its script's --resume")
    saved = read_json(record, "run record", keys=("distance_type", "hash_bit", "image_network", "num_iters"))
    if "overwrite" in options.given(args):
        raise UserError("--overwrite starts a new run and --resume continues one: give one of them")
    check_resumed(args, saved, RESUME_MAY_CHANGE, lambda dest: f"--{dest}")
    # defaults for runs from before these options; what run.json records beside the arguments goes
    run_args = argparse.Namespace(**{"label_noise": 0.0, "seen_fraction": 0.75,
                                     **{k: v for k, v in saved.items() if k not in ("kind", "threads")}})
    for key in RESUME_MAY_CHANGE:
        if key in options.given(args):
            setattr(run_args, key, getattr(args, key))
    run_args.resume, run_args.overwrite = True, False
    return run_args


def output_paths(args):
    """The run folder, the snapshot file and the test output folder of a run."""
    run_dir = os.path.join(args.log_dir, run_name(args))
    snapshot = os.path.join(args.snap_path, f"{args.annotation}_{args.s_dataset}_{args.t_dataset}_iter_"
                                            f"{args.num_iters:05d}.pt")
    return run_dir, snapshot, os.path.join(args.test_output_dir, f"{args.annotation}_iter_{args.num_iters:05d}")


def _train_main(args, device):
    PROGRESS.reset()
    args = resumed(args) if args.resume else resolve(args)
    check_device(args.gpu_id, "--gpu_id")
    main_process = distributed.is_main()  # only rank 0 writes, and tests at the end
    run_dir, snapshot, outputs = output_paths(args)
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")
    locate = " ".join(f"--{k} {shlex.quote(str(getattr(args, k)))}" for k in ("log_dir", "annotation", "s_dataset",
                                                                               "t_dataset"))
    folder = RunFolder(run_dir, "--annotation", resume=args.resume, overwrite=args.overwrite,
                       resume_hint=f"train_mmhh.py {locate} --resume")
    try:
        with folder.starting():  # nothing is removed or written until the inputs are checked
            if main_process:
                folder.writable(args.log_dir, "--log_dir")
                folder.claim()
                theirs = [path for path in (snapshot, os.path.join(outputs, "test_code.npy")) if os.path.exists(path)]
                if theirs and not args.resume and not args.overwrite:
                    raise UserError(f"{theirs[0]} belongs to another run of annotation {args.annotation}: use another "
                                    "--annotation, or add --overwrite to replace that run's files")
                for place, option in ((args.snap_path, "--snap_path"), (args.test_output_dir, "--test_output_dir")):
                    folder.writable(place, option)
            device = device or choose_device(args.gpu_id, "--gpu_id")
            if not main_process:  # rank 0 saves the split first, the others read it
                distributed.barrier()
            data, train_labels, protocol = data_for(args.s_dataset, vars(args),
                                                    run_dir if args.resume or not main_process else None)
            target = target_settings(vars(args))
            same = get_dataset(args.t_dataset).name == data.info.name and \
                (target["data_root"], target["image_root"]) == (args.data_root, args.image_root)
            test_data = data if same else data_for(args.t_dataset, {**target, "label_noise": 0.0}, None)[0]
            model = build_network(args.image_network, args.hash_bit, args.pretrained, args.weights, args.seed)
            if args.pre_model_path:
                path = snapshot_path(args.pre_model_path, "--pre_model_path")
                advice = "give --pre_model_path a snapshot of the same --hash_bit and --image_network"
                load_state(model, load_checkpoint(path, writer(args), advice)["model"], path, advice)
            B = min(args.batch_size, len(data.train.labels))
            if B % distributed.world_size():
                raise UserError(f"--batch_size {B} cannot be shared equally by {distributed.world_size()} "
                                "processes; make it a multiple of the number of processes")
            ckpt = None
            if args.resume and os.path.exists(ckpt_path):
                ckpt = load_checkpoint(ckpt_path, writer(args), f"this is not the checkpoint of the run in {run_dir}; "
                                                                 "start afresh with another --annotation")
            if main_process:
                folder.start()
                data.save_split(os.path.join(run_dir, "split.json"))
                write_json(os.path.join(run_dir, "protocol.json"), protocol)  # the corrupted items, unseen classes
                if not args.resume:
                    write_json(os.path.join(run_dir, "run.json"), {**options.public(args), "kind": "MMHH",
                                                                   "threads": thread_counts()})
                distributed.barrier()
        PROGRESS.update(resume=f"python train_mmhh.py {locate} --resume")
        return train(args, data, test_data, model, ckpt, device, run_dir, snapshot, outputs, train_labels, protocol)
    finally:
        folder.release()


def train(args, data, test_data, model, ckpt, device, run_dir, snapshot, outputs, train_labels, protocol):
    """Train from the checkpoint `ckpt` (None: from the start) with the training images' labels
    `train_labels` (noisy under --label_noise), write the snapshot, test it; `protocol` goes to
    the results file."""
    main_process = distributed.is_main()
    info = data.info
    if main_process:
        print(f"{args.distance_type} loss on {info.name} ({len(data.train.labels)} train, {len(data.query.labels)} "
              f"queries, {len(data.database.labels)} database), {args.hash_bit} bits, preset {args.preset}, "
              f"{args.image_network}, device {device_name(device)}, commit {git_commit()}"
              + distributed.describe())
    model = model.to(device, memory_format=torch.channels_last)
    opt = build_optimizer(model, args.optimizer, args.lr, weight_decay(args.lr_schedule_type, args.weight_decay))
    train = feeders(data, "train", device, args, train=True)
    labels = label_matrix(train_labels, info.classes, device)  # N x C
    n = len(train)
    B = min(args.batch_size, n)
    per_epoch = n // B  # full batches only: every pair matrix has the same size
    margins = parse_margin_params(args.margin_params)

    memory = None
    if args.batch_type == "BatchInitMem":
        if args.semi_init_type == "MODEL":
            start_codes = encode(model, feeders(data, "train", device, args), np.arange(n), B)
        else:
            start_codes = torch.randn(n, args.hash_bit, generator=torch.Generator().manual_seed(args.seed)).to(device)
        memory = Memory(start_codes, labels, warmup_iterations(args.batch_params), args.semi_init_momentum,
                        args.num_iters, args.norm_memory_batch)

    t, seconds = 0, 0.0
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")
    if ckpt is not None:
        load_state(model, ckpt["model"], ckpt_path, "start afresh with another --annotation")
        load_state(opt, ckpt["optimizer"], ckpt_path, "start afresh with another --annotation")
        if memory is not None:
            memory.codes = ckpt["memory"].to(device)
        t, seconds = ckpt["iteration"], ckpt["seconds"]
    log, board = JsonLog(os.path.join(run_dir, "log.jsonl")), _tensorboard(args, run_dir) if main_process else None
    if main_process:  # the iterations after the checkpoint are done again: their old lines go
        log.keep(lambda r: r.get("iteration", t) <= t)
    net = distributed.wrap(model)  # under torchrun: DDP (gradients averaged over processes)
    bar = tqdm(total=args.num_iters, initial=t, desc=f"{args.distance_type} {args.hash_bit} bits",
               disable=None if main_process else True, file=sys.stderr)
    sums, count, saved = np.zeros(3), 0, t
    while t < args.num_iters:
        tic = time.time()
        epoch = t // per_epoch
        order = np.random.default_rng([args.seed, epoch]).permutation(n)[:per_epoch * B]
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + epoch)  # augmentation of this epoch
        # dropout draws from the global generator: seeded per epoch, so a resumed run draws as a whole one
        torch.manual_seed(int(np.random.default_rng([args.seed, epoch, 1]).integers(2 ** 62)))
        for pos, x in train.batches(order, B, generator, distributed.shard(B)):  # this process's share
            if t >= args.num_iters:
                break
            PROGRESS.update(where=f"at iteration {t + 1} of {args.num_iters} ({saved} of them in the checkpoint)")
            index = torch.as_tensor(order[pos.numpy()], device=device)
            lr, w_s, parts = train_one_step(args, t, net, opt, memory, x, labels[index], index, margins,
                                            info.similar_weight)
            sums += parts
            count += 1
            t += 1
            bar.update(1)
            if main_process and (t % args.log_every == 0 or t == args.num_iters):
                check_finite(model, f"at iteration {t}", f"lower --lr (now {lr:g})")
                mean = sums / count
                record = {"iteration": t, "lr": lr, "pair_loss": mean[0], "quantization_loss": mean[1],
                          "loss": mean[2], "similar_weight": w_s, "scale": float(model.scale),
                          "seconds": round(seconds + time.time() - tic, 2)}
                log.write(**record)
                if board:
                    for key in ("lr", "pair_loss", "quantization_loss", "loss"):
                        board.add_scalar(key, record[key], t)
                bar.set_postfix(loss=f"{mean[2]:.4f}")
                sums, count = np.zeros(3), 0
        seconds += time.time() - tic
        # at epoch ends only, so that a resumed run sees the batches an uninterrupted one would
        if main_process:
            check_finite(model, f"at iteration {t}", f"lower --lr (now {opt.param_groups[0]['lr']:g})")
            save_checkpoint(ckpt_path, state(model, opt, memory, t, seconds, args))
            saved = t
    bar.close()
    if not main_process:
        return None
    check_finite(model, f"at iteration {t}", f"lower --lr (now {opt.param_groups[0]['lr']:g})")
    save_checkpoint(snapshot, state(model, opt, memory, t, seconds, args))
    print(f"snapshot: {snapshot}")
    PROGRESS.update(where="while testing the snapshot", resume=f"python test_mmhh.py --model_path {snapshot}")
    try:
        result, arrays = test_model(model, test_data, device, args, args.test_sample_ratio, args.seed, args.radius,
                                    args.batch_size)
    except UserError as e:
        raise UserError(f"{one_line(e)} (the snapshot {snapshot} is saved: test it with python test_mmhh.py "
                        f"--model_path {snapshot})") from None
    report(result, args.radius)
    save_test_output(outputs, arrays, test_data.info.classes)
    print(f"test outputs: {outputs}")
    record = results_record(test_data, args, result, seconds, device, args.hash_bit, protocol)
    record["test_output"] = os.path.abspath(outputs)
    record["weights"] = getattr(model.backbone, "pretrained_from", None)
    record["world_size"] = distributed.world_size()
    write_json(os.path.join(run_dir, "results", f"{test_data.info.name}_{record['method']}_{args.hash_bit}bits.json"),
               record)
    return record


def state(model, opt, memory, t, seconds, args):
    """What checkpoints and snapshots hold: state_dicts, memory, iteration, seconds, arguments, writer."""
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": t, "seconds": seconds,
            "memory": None if memory is None else memory.codes.cpu(), "args": options.public(args),
            "written_by": writer(args)}


def _tensorboard(args, run_dir):
    if not args.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("notice: --tensorboard needs the tensorboard package (pip install tensorboard); logging to "
              "log.jsonl only", file=sys.stderr)
        return None
    return SummaryWriter(os.path.join(run_dir, "tensorboard"))


# ------------------------------------------------------------------------- test_mmhh

def snapshot_path(path, option="--model_path"):
    """The snapshot file, given with or without its .pt suffix."""
    for candidate in (path, path + ".pt"):
        if os.path.isfile(candidate):
            return candidate
    raise UserError(f"no snapshot at {path} (nor {path}.pt); give {option} of a file train_mmhh.py wrote "
                    "under --snap_path")


def snapshot_settings(saved, name):
    """The snapshot's train flags `saved` with the data roots of data set `name`: the tested
    set's (--t_data_root) or the training set's (--data_root), none for another data set."""
    if name == get_dataset(saved["t_dataset"]).name and "t_data_root" in saved:  # not in older snapshots
        return target_settings(saved)
    if name == get_dataset(saved["s_dataset"]).name:
        return saved
    return {**saved, "data_root": None, "image_root": None}


def test_main(args):
    check_device(args.gpu_id, "--gpu_id")
    path = snapshot_path(args.model_path)
    advice = "give --model_path a snapshot that train_mmhh.py wrote"
    ckpt = load_checkpoint(path, {"kind": writer(argparse.Namespace(hash_bit=0, image_network=""))["kind"]}, advice)
    saved = ckpt["args"]
    results = os.path.join(args.log_dir, args.annotation, "results")
    make_folder(results, "--log_dir")  # fails now rather than after the test
    if args.output_path:
        make_folder(args.output_path, "--output_path")
    device = choose_device(args.gpu_id, "--gpu_id")
    model = build_network(saved["image_network"], saved["hash_bit"], pretrained=False)
    load_state(model, ckpt["model"], path, advice)
    model = model.to(device, memory_format=torch.channels_last)
    for key in ("resize", "crop", "augment"):  # the snapshot's input pipeline
        setattr(args, key, saved[key])
    name = args.dataset or saved["t_dataset"]
    run_dir = os.path.join(saved["log_dir"], f"{saved['annotation']}_{saved['s_dataset']}_{saved['t_dataset']}")
    settings = snapshot_settings(saved, get_dataset(name).name)
    training_set = get_dataset(name).name == get_dataset(saved["s_dataset"]).name and \
        (settings["data_root"], settings["image_root"]) == (saved["data_root"], saved["image_root"])
    # the training run's split when it is still there and of this data set; a seeded split is re-derived otherwise
    same = training_set and os.path.exists(os.path.join(run_dir, "split.json"))
    given = {k: getattr(args, k) for k in ("data_root", "image_root", "path_prefix", "missing_images")
             if getattr(args, k) is not None}
    # the corruption of the training labels is re-derived for the record, on the training set only
    data, _, protocol = data_for(name, {**settings, **given, **({} if training_set else {"label_noise": 0.0})},
                                 run_dir if same else None)
    if not training_set:  # the rate trained under; the items corrupted were another data set's
        protocol = {k: v for k, v in protocol.items() if k not in ("corrupted_items", "corrupted")}
        protocol["label_noise"] = saved.get("label_noise", 0.0)
    seed = saved["seed"] if args.seed is None else args.seed
    tic = time.time()
    result, arrays = test_model(model, data, device, args, args.test_sample_ratio, seed, args.radius,
                                args.batch_size)
    report(result, args.radius)
    if args.output_path:
        for name, value in arrays.items():
            value = value.cpu().numpy() if torch.is_tensor(value) else value
            atomic_write(os.path.join(args.output_path, f"{name}.npy"), lambda f: np.save(f, value))
    trained = argparse.Namespace(**{**saved, "seed": seed})
    record = results_record(data, trained, result, time.time() - tic, device, saved["hash_bit"], protocol)
    record["snapshot"] = os.path.abspath(path)
    write_json(os.path.join(results, f"{data.info.name}_{record['method']}_{saved['hash_bit']}bits.json"), record)
    return record
