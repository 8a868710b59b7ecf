"""MMHH's options: the presets, the parsers of train_mmhh.py and test_mmhh.py, how unset
options are filled (preset, then the released code's defaults) and checked, the arguments
of a run that is resumed, and where a run's files go.

Flag names and defaults are the released code's (docs/MMHH.md), so its command lines run
unchanged; every flag also has a hyphenated spelling.
"""
import argparse
import os
import sys

from utils import options
from utils.data import own
from utils.data.datasets import get_dataset
from utils.data.feeder import default_workers
from utils.errors import UserError
from utils.mmhh.losses import parse_margin_params
from utils.mmhh.optim import FIXED_LR_SCHEDULES, RELEASED_LR, SCHEDULES
from utils.models import AMP, NETWORKS
from utils.options import Parser, check_resumed, nonnegative_float, nonnegative_int, positive_float
from utils.runs import REPO, check_record, read_json


LOSSES = ("Hamming", "MMHH", "MMHH0", "DCH")
EVAL_ON = ("test", "val")
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
    _add(p, "--workers", type=nonnegative_int, default=default_workers(),
         help=f"DataLoader workers for list-file data (default: {default_workers()}, the CPU cores this process may "
              "use, at most four)")
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
    p = Parser(description="Train MMHH's hashing network with HashNet's pair loss (the released default), the MMHH "
                           "loss (--distance_type MMHH) or the losses it is compared with (MMHH0, DCH)")
    _common(p)
    _add(p, "--s_dataset", default="cifar10", help="training data set: coco_80, nuswide_21, nuswide_81, imagenet100, "
                                                   "cifar10, digits, ...; or your own images: folder (class folders) "
                                                   "or lists (list files), docs/data.md (default: cifar10)")
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
    _add(p, "--loss_lambda", type=nonnegative_float,
         help="weight of the quantization loss (DCH's own under --distance_type DCH, DHN's otherwise); 0 allowed "
              "(default: 0.1; always 0 with --image_loss_type HashNet, as released)")
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
    _add(p, "--distance_type", default="Hamming", choices=LOSSES,
         help="pair loss: Hamming = HashNet's pairwise cross-entropy (the released default), MMHH = the paper's "
              "margin-reweighted Cauchy loss (its README command passes --distance_type MMHH), MMHH0 = the same "
              "without the margin reweighting, or DCH = Deep Cauchy Hashing's Cauchy cross-entropy and Cauchy "
              "quantization (docs/MMHH.md) (default: Hamming)")
    _add(p, "--dch_distance", default="cosine", choices=("cosine", "euclidean"),
         help="DCH's distance: cosine = the paper's K/2 (1 - cos); euclidean = its released code's squared Euclidean "
              "distance of the raw outputs, with that code's pair weights under 'auto' (dissimilar pairs 1) "
              "(default: cosine)")
    _add(p, "--mission", default="Hashing", help="the released code's task switch; only Hashing was implemented "
                                                 "(default: Hashing)")
    _add(p, "--log_dir", default=os.path.join(REPO, "log"), help="folder of the run folders (default: log/ in the "
                                                                  "repository)")
    _add(p, "--lr_schedule_type", choices=SCHEDULES,
         help="learning-rate schedule: Stair_Step halves --lr every --decay_step; HashNet_Step halves 3e-4 every "
              "2000 iterations; DANN_INV is 3e-4 (1 + 3e-4 t)^-0.75 (default: Stair_Step)")
    _add(p, "--gamma", type=positive_float, default=1.0, help="scale > 0 of the Cauchy kernel of the MMHH, MMHH0 and "
                                                             "DCH losses (default: 1.0)")
    _add(p, "--sigmoid_param", type=positive_float, default=1.0,
         help="x = sigmoid_param <h_i, h_j> of the Hamming loss (default: 1.0)")
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
    _add(p, "--semi_init_momentum", type=options.unit_interval, default=0.5,
         help="beta0 of the memory momentum (default: 0.5)")
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
    own.add_options(p, underscores=True)
    _add(p, "--topk", type=options.positive_int,
         help="--s_dataset folder or lists: R of MAP@TopK, the database items ranked per query; test_mmhh.py takes "
              "the snapshot's (default: the whole database)")
    _add(p, "--eval_on", choices=EVAL_ON, default="test",
         help="test = train on the training part, test the test queries against the database; val = hold a "
              "seeded tenth of the training part out as validation queries, train on the rest and test against it "
              "(docs/MMHH.md) (default: test)")
    _add(p, "--log_every", type=int, default=50, help="iterations per log line (default: 50)")
    _add(p, "--amp", choices=AMP, default="off",
         help="bf16: the backbone's forward in bfloat16 autocast while training (GPUs with bfloat16 units; on CPUs it "
              "is usually slower); the hash layer, the losses and the test stay float32 (default: off, float32 "
              "throughout as the released code)")
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
    _add(p, "--radius", type=nonnegative_int, default=2,
         help="0 reports MAP@TopK with the data set's R, r > 0 MAP@H<=r (default: 2)")
    _add(p, "--annotation", default="empty", help="run name: results go to --log_dir/<annotation>/ (default: empty, "
                                                  "as released)")
    _add(p, "--log_dir", default=os.path.join(REPO, "log"), help="(default: log/ in the repository)")
    _add(p, "--test_sample_ratio", type=options.fraction, default=1.0, help="fraction of queries and database tested "
                                                                "(default: 1.0)")
    _add(p, "--seed", type=options.seed, help="seed of the test sample (default: the snapshot's)")
    _add(p, "--eval_on", choices=EVAL_ON,
         help="test = the test queries against the database; val = the validation split of a snapshot trained with "
              "--eval_on val (default: the snapshot's)")
    _add(p, "--overwrite", action="store_true",
         help="replace the results file of an earlier test of this --annotation (default: off: refused)")
    _add(p, "--saved_outputs", action="store_true",
         help="score the outputs the snapshot's training run saved in its --test_output_dir at its end instead of "
              "encoding the data again (no forward pass): the same sample under other conventions (--opt-test, "
              "--radius, --rank_by); only for the run's last snapshot and the sample its test scored (default: off)")
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
    own.check_options([args.s_dataset, args.t_dataset], options.given(args))
    if args.t_data_root is None:
        if target.name == source.name:
            args.t_data_root, args.t_image_root = args.data_root, args.t_image_root or args.image_root
        elif target.source != "digits":  # the training set's root holds the training set's lists
            raise UserError(f"--t_dataset {args.t_dataset} is not --s_dataset {args.s_dataset}: give --t_data_root, "
                            f"where {target.name}'s data is")
    if args.protocol is None:
        args.protocol = default_protocol(args.s_dataset)
    if args.eval_on == "val" and (target.name != source.name or (args.t_data_root, args.t_image_root) !=
                                  (args.data_root, args.image_root)):
        raise UserError(f"--eval_on val tests on the validation split of the training set {source.name}; drop "
                        f"--t_dataset {args.t_dataset} (and --t_data_root), or use --eval_on test")
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


def target_settings(settings):
    """The train flags `settings` with the data roots of the data set tested (--t_data_root,
    --t_image_root) in place of the training set's."""
    return {**settings, "data_root": settings["t_data_root"], "image_root": settings["t_image_root"]}


def default_protocol(dataset):
    """DeepHash/HashNet's split where the data set has it, else its own first."""
    available = get_dataset(dataset).protocols
    return "deephash" if "deephash" in available or not available else available[0]


def run_name(args):
    """<annotation>_<s_dataset>_<t_dataset>: the run's folder under --log_dir, as the released
    code named its logs (also before resolve(): --fake_cpu_demo and an empty --t_dataset)."""
    source = "digits" if str(args.fake_cpu_demo) == "True" else args.s_dataset
    return f"{args.annotation}_{source}_{(args.t_dataset if source == args.s_dataset else '') or source}"


RESUME_MAY_CHANGE = ("resume", "gpu_id", "workers", "tensorboard")


def resumed(args):
    """The arguments of the run that --log_dir, --annotation, --s_dataset and --t_dataset name
    (its run.json), after checking that every option given beside --resume is the run's."""
    record = os.path.join(args.log_dir, run_name(args), "run.json")
    if not os.path.exists(record):
        raise UserError(f"--resume: {os.path.dirname(record)} holds no run (no run.json); run without --resume to "
                        "start this run, or give the --log_dir, --annotation and data sets of the run")
    mah = f"{os.path.dirname(record)} holds a MAH run; continue it with its script's --resume"
    saved = read_json(record, "run record", keys=("distance_type", "hash_bit", "image_network", "num_iters"),
                      foreign=lambda r: mah if r.get("kind") == "MAH" or "arch" in r else None)
    saved.setdefault("amp", "off")  # runs from before --amp trained in float32
    if "overwrite" in options.given(args):
        raise UserError("--overwrite starts a new run and --resume continues one: give one of them")
    check_resumed(args, saved, RESUME_MAY_CHANGE, lambda dest: f"--{dest}")
    check_record(record, saved, os.path.join(os.path.dirname(record), "checkpoint.pt"),
                 RESUME_MAY_CHANGE + ("overwrite",), {"kind": "train_mmhh.py model"})
    # defaults for runs from before these options; what run.json records beside the arguments goes
    run_args = argparse.Namespace(**{"label_noise": 0.0, "seen_fraction": 0.75, "eval_on": "test",
                                     "dch_distance": "cosine",
                                     **{k: v for k, v in saved.items() if k not in ("kind", "threads", "command")}})
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
