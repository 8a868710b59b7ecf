"""MAH's options: the presets, the one argument parser of the six scripts, how unset options
are filled (preset, then the script's paper defaults) and checked, and the arguments of a
run that is resumed.
"""
import argparse
import os
import sys

from utils import options
from utils.data import own
from utils.data.feeder import default_workers
from utils.errors import UserError
from utils.models import AMP
from utils.options import Parser, check_resumed, nonnegative_float, nonnegative_int, numbers, positive_float
from utils.runs import check_record, read_json

PRESETS = {
    "paper": dict(backbone="resnet50", pretrained=True, resize=256, crop=224, augment=False, optimizer="sgd",
                  lr=1e-3, lr_steps="10,20,30,40,50", v_init="zeros", v_hold=0),
    "cpu-small": dict(backbone="small", pretrained=False, resize=32, crop=32, augment=True, optimizer="adam",
                      lr=1e-3, lr_steps="80,98", max_iter=110, epochs=1, batch_size=64, num_samples=4000,
                      eval_every=10, v_init="nested", v_hold=30),
    # the paper's recipe at a 2-core budget: ImageNet MobileNetV2 (offline: utils/weights.py) at 64 px,
    # one epoch per outer iteration instead of three; SGD, lr steps, V from zeros and everything
    # else as the script
    "cpu-paper": dict(backbone="mobilenet_v2", pretrained=True, resize=64, crop=64, augment=False, optimizer="sgd",
                      lr=1e-3, lr_steps="10,20,30,40,50", epochs=1, v_init="zeros", v_hold=0),
    # what learns within 15 minutes on 2 cores, keeping V from zeros with no hold: as
    # cpu-paper, plus Adam at 1e-4 (plain SGD at 1e-3 is still climbing after 41 iterations) and
    # augmentation, lr / 10 after outer iteration 30, 41 outer iterations for every script
    "cpu-pretrained": dict(backbone="mobilenet_v2", pretrained=True, resize=64, crop=64, augment=True,
                           optimizer="adam", lr=1e-4, lr_steps="30", max_iter=41, epochs=1, eval_every=10,
                           v_init="zeros", v_hold=0),
    "smoke": dict(backbone="small", pretrained=False, resize=32, crop=32, augment=False, optimizer="sgd",
                  lr=1e-3, lr_steps="", max_iter=2, epochs=1, batch_size=16, num_samples=48, eval_every=2,
                  v_init="zeros", v_hold=0),
}
PAPER_KEYS = ("bits", "aux_bits", "head_weights", "gamma", "max_iter", "epochs", "batch_size", "num_samples",
              "eval_every")


def get_args_parser():
    p = Parser(description="MAH: collaborative multi-head asymmetric hashing")
    p.add_argument("--dataset", help="data set name from utils/data/datasets.py, or your own images: folder (class "
                                     "folders) or lists (list files), docs/data.md; the script keeps its method and "
                                     "defaults (default: the script's)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                   help="paper = the spec exactly; cpu-paper = the spec with ImageNet MobileNetV2 at 64 px and one "
                        "epoch per outer iteration, for a CPU; cpu-pretrained = cpu-paper with Adam, augmentation "
                        "and 41 outer iterations for every script, tuned to learn within 15 minutes; cpu-small = "
                        "small backbone from scratch on 32x32 in minutes on a CPU; smoke = seconds, for tests "
                        "(default: paper)")
    p.add_argument("--bits", help="target code length(s), e.g. '4' or '4,6,8,10,12', each trained in turn "
                                  "(default: the script's)")
    p.add_argument("--aux-bits", help="the two auxiliary code lengths, absolute, e.g. '8,16' (default: "
                                      "2*c0,4*c0; with --preset paper, the script's own lengths for its own "
                                      "target length)")
    p.add_argument("--head-weights", help="loss weights w0,w1,w2 of the target and auxiliary heads (default: the "
                                          "script's)")
    p.add_argument("--adsh", action="store_true",
                   help="train ADSH (Jiang and Li, AAAI 2018), the single-head baseline: the target length only, "
                        "no auxiliary heads and no auxiliary loss, its loss weighted by the script's w0; backbone, "
                        "preset, sampling, DCC, V start and seed as the script's MAH run, so runs of one seed pair "
                        "(default: off, MAH)")
    p.add_argument("--gamma", type=nonnegative_float, help="quantization weight gamma >= 0 of the ADSH loss (default: "
                                                          "the script's)")
    p.add_argument("--max-iter", type=int, help="outer iterations (default: the script's, or the preset's)")
    p.add_argument("--epochs", type=int, help="passes over the sample per outer iteration (default: the script's)")
    p.add_argument("--batch-size", type=int, help="images per batch, all processes together under torchrun "
                                                  "(default: the script's)")
    p.add_argument("--num-samples", type=int, help="database items sampled per outer iteration (default: the "
                                                   "script's)")
    p.add_argument("--eval-every", type=int, help="evaluate every this many outer iterations and at the end "
                                                  "(default: the script's)")
    p.add_argument("--lr", type=positive_float, help="learning rate (default: 1e-3, as the original; 1e-4 for "
                                                     "cpu-pretrained)")
    p.add_argument("--lr-steps", help="outer iterations after which lr /= 10, e.g. '10,20' (default: "
                                      "10,20,30,40,50 as the original; 30 for cpu-pretrained)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="sgd (weight decay 5e-4, as the original) or adam "
                                                                "(default: sgd; adam for cpu-small and cpu-pretrained)")
    p.add_argument("--momentum", type=options.momentum, default=0.0, help="momentum of sgd, in [0, 1) (default: 0, "
                                                                          "as the original)")
    p.add_argument("--v-init", choices=("zeros", "labels", "nested"),
                   help="database codes before the first DCC: zeros (as the original), labels (each class a "
                        "distinct seeded code, V = sign(labels @ codes)) or nested (as labels, each longer head's "
                        "class code the next shorter one plus new bits) (default: zeros; nested for cpu-small)")
    p.add_argument("--v-hold", type=int,
                   help="outer iterations that keep V as initialised before DCC starts; needs --v-init labels or "
                        "nested (default: 0; 30 for cpu-small)")
    p.add_argument("--backbone", help="resnet50, resnet18, alexnet, vgg11, mobilenet_v2 or small (default: resnet50)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction,
                   help="start from torchvision's ImageNet weights (default: yes for resnet50 and the paper preset)")
    p.add_argument("--weights", help="a local file of the backbone's ImageNet weights, for offline use (default: "
                                     "none: torchvision's download; for mobilenet_v2 offline, the packaged weights)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   help="random crop and flip of training images: a 4-pixel shift of 32x32 arrays, a crop of at least "
                        "3/4 of the area of list-file images (default: no; yes for cpu-small and cpu-pretrained)")
    p.add_argument("--data-root", help="where the data set is, a folder or a .tar (see data/README.md); not needed for "
                                       "digits (default: none)")
    p.add_argument("--image-root", help="where relative image paths of list files start (default: --data-root)")
    p.add_argument("--path-prefix", help="OLD=NEW: rewrite absolute image paths of old list files (default: none)")
    p.add_argument("--missing-images", choices=("error", "drop"), default="error",
                   help="list rows whose image file is absent: stop with the count and the first one, or leave them "
                        "out and record how many in split.json (default: error)")
    p.add_argument("--download", action="store_true",
                   help="download CIFAR-10 into --data-root if missing (default: off)")
    p.add_argument("--protocol", default="dpsh", help="split of array data sets: dpsh, deephash or full; or unseen: "
                                                      "the dpsh split (list files: theirs) with retrieval among "
                                                      "classes never trained on (docs/protocols.md) (default: dpsh, "
                                                      "as MAH)")
    p.add_argument("--seen-fraction", type=options.open_fraction, default=0.75,
                   help="--protocol unseen: the share of the classes seen in training, rounded (default: 0.75)")
    p.add_argument("--label-noise", type=options.rate, default=0.0,
                   help="the share of the database items whose labels (those the loss and DCC see) are replaced by "
                        "those of an item sharing no label with them, seeded (docs/protocols.md) (default: 0)")
    own.add_options(p)
    p.add_argument("--mean", help="--dataset folder or lists: the per-channel mean R,G,B that images are normalised "
                                  "with (default: ImageNet's, 0.485,0.456,0.406, as the pretrained backbones learned)")
    p.add_argument("--std", help="--dataset folder or lists: the per-channel standard deviation R,G,B that images are "
                                 "divided by (default: ImageNet's, 0.229,0.224,0.225)")
    p.add_argument("--seed", type=options.seed, default=0, help="seed of the split, sampling and initialisation "
                                                                "(default: 0)")
    p.add_argument("--gpu", default="0", help="CUDA device number, or 'cpu' (default: 0; the CPU when there is no "
                                              "CUDA; under torchrun each process takes the GPU of its local rank, "
                                              "or the CPU with 'cpu')")
    p.add_argument("--workers", type=nonnegative_int, default=default_workers(),
                   help=f"DataLoader workers for list-file data (default: {default_workers()}, the CPU cores this "
                        "process may use, at most four)")
    p.add_argument("--amp", choices=AMP, default="off",
                   help="bf16: the backbone's forward in bfloat16 autocast while training (GPUs with bfloat16 units; "
                        "on CPUs it is usually slower); heads, losses, DCC and the metrics stay float32 (default: "
                        "off, float32 throughout as the papers)")
    p.add_argument("--output-dir", help="run folder (default: runs/<script>/<timestamp>)")
    p.add_argument("--resume", help="continue the killed run in this folder, with its own arguments; only --gpu, "
                                    "--workers and the data location may be given beside it (default: none, a new run)")
    p.add_argument("--overwrite", action="store_true",
                   help="let a new run replace the run in --output-dir: that run's files are removed once this run's "
                        "inputs are checked (default: off: a folder that holds a run is refused)")
    return p


# ------------------------------------------------------------------------ options

def resolve(args):
    """Fill unset options from the preset, then from the script's paper defaults; check them."""
    own.check_options([args.dataset], options.given(args))
    for key in ("mean", "std"):  # only --dataset folder and lists take them (check_options)
        if getattr(args, key, None) is not None:
            setattr(args, key, numbers(getattr(args, key), flag(key), count=3, minimum=0))
    if args.std and min(args.std) <= 0:
        raise UserError(f"--std {','.join(map(str, args.std))}: a channel cannot be divided by 0; give each above 0")
    preset = PRESETS[args.preset]
    for key in set(preset) | set(PAPER_KEYS) | {"lr", "optimizer", "lr_steps", "backbone", "pretrained", "augment",
                                                "v_init", "v_hold"}:
        if getattr(args, key, None) is None:
            setattr(args, key, preset.get(key, args.paper.get(key)))
    args.bits = numbers(args.bits, "--bits", int, unique=True)
    for c in args.bits:
        if not 1 <= c <= 64:
            raise UserError(f"--bits {c}: code lengths must be 1 to 64")
    if args.adsh:  # one head: options of the auxiliary heads have nothing to act on
        for key in ("aux_bits", "head_weights"):
            if key in options.given(args):
                raise UserError(f"{flag(key)} sets the auxiliary heads, which --adsh (one head) has none of; drop "
                                f"{flag(key)}, or drop --adsh to train MAH")
    args.head_weights = numbers(args.head_weights, "--head-weights (w0,w1,w2)", count=3, minimum=0)
    if not any(args.head_weights):
        raise UserError("--head-weights 0,0,0 leaves nothing to train; give at least one weight above 0")
    for key in ("max_iter", "epochs", "batch_size", "num_samples", "eval_every"):
        if getattr(args, key) < 1:
            raise UserError(f"--{key.replace('_', '-')} must be at least 1")
    if args.v_hold < 0 or (args.v_hold and args.v_init == "zeros"):
        raise UserError(f"--v-hold {args.v_hold}: holding needs --v-init labels or nested and a count of at least 0 "
                        "(zero codes give the network nothing to learn)")
    if args.v_hold >= args.max_iter:
        print(f"note: --v-hold {args.v_hold} >= --max-iter {args.max_iter}: the database codes stay as initialised "
              "(no DCC)", file=sys.stderr)
    args.lr_steps = numbers(args.lr_steps, "--lr-steps", int) if str(args.lr_steps).strip() else []
    for c0 in args.bits:  # fail before any data is loaded
        aux_lengths(args, c0)
    return args


def aux_lengths(args, c0):
    """The auxiliary code lengths (c1, c2) trained beside c0; none for ADSH."""
    if getattr(args, "adsh", False):
        return ()
    if args.aux_bits:
        aux = numbers(args.aux_bits, "--aux-bits (c1,c2)", int, count=2)
    else:  # the script's lengths belong to the paper's recipe; every other preset has the one rule
        aux = args.paper.get("aux_for", {}).get(c0) if args.preset == "paper" else None
        aux = aux or (2 * c0, 4 * c0)
    if min(aux) < c0 or max(aux) > 1024:
        raise UserError(f"--aux-bits {aux[0]},{aux[1]}: auxiliary codes must be at least as long as the target "
                        f"({c0} bits) and at most 1024 bits")
    # the cascade's longest code feeds the shorter ones
    if getattr(args, "arch", None) == "cascade" and aux[0] > aux[1]:
        raise UserError(f"--aux-bits {aux[0]},{aux[1]}: the cascade feeds c2 into c1, so c1 must not be longer "
                        f"than c2; give --aux-bits {aux[1]},{aux[0]}")
    return tuple(aux)


def method_name(args):
    """The method a run trains, as results files and tables name it."""
    return "ADSH" if getattr(args, "adsh", False) else f"MAH-{args.arch}"


def arguments(args):
    """The resolved arguments as saved in checkpoints and results (no per-script table, no command)."""
    return {k: v for k, v in options.public(args).items() if k not in ("paper", "command")}


# Options that may differ from the run's when it is resumed: where it computes, not what.
RESUME_MAY_CHANGE = ("resume", "gpu", "workers")
# and where its data is (the saved split fixes which images), reported in one line
RESUME_MAY_MOVE = ("data_root", "image_root", "path_prefix")


def flag(dest):
    return "--" + dest.replace("_", "-")


def resumed(args):
    """The arguments of the run in --resume (its run.json), after checking that the folder
    holds a run of this script and that every option given beside --resume is the run's."""
    folder, record = args.resume, os.path.join(args.resume, "run.json")
    mmhh = f"{folder} holds a train_mmhh.py run; continue it with train_mmhh.py --resume"
    saved = read_json(record, "run record", keys=("script", "arch", "dataset", "bits", "preset"),
                      foreign=lambda r: mmhh if r.get("kind") == "MMHH" or "distance_type" in r else None)
    saved.setdefault("amp", "off")  # runs from before --amp trained in float32
    if saved["script"] != args.script:
        raise UserError(f"{folder} holds a run of {saved['script']}.py, not {args.script}.py; continue it with "
                        f"python {saved['script']}.py --resume {folder}")
    if "overwrite" in options.given(args):
        raise UserError("--overwrite starts a new run and --resume continues one: give one of them")
    check_resumed(args, saved, RESUME_MAY_CHANGE + RESUME_MAY_MOVE, flag)
    check_record(record, saved, os.path.join(folder, "checkpoint.pt"),
                 RESUME_MAY_CHANGE + RESUME_MAY_MOVE + ("output_dir", "overwrite"), {"kind": f"MAH-{saved['arch']}"})
    moved = [k for k in RESUME_MAY_MOVE if k in options.given(args) and getattr(args, k) != saved.get(k)]
    for key in moved:
        print(f"notice: resuming with {flag(key)} {getattr(args, key)} instead of the run's {saved.get(key)}",
              file=sys.stderr)
    # defaults for runs from before these options; what run.json records beside the arguments goes
    run_args = argparse.Namespace(**{"adsh": False, "v_init": "zeros", "v_hold": 0, "momentum": 0.0, "command": None,
                                     "missing_images": "error", "seen_fraction": 0.75, "label_noise": 0.0,
                                     **{k: v for k, v in saved.items() if k not in ("kind", "threads")}})
    for key in ("gpu", "workers", *moved):
        if key in options.given(args):
            setattr(run_args, key, getattr(args, key))
    run_args.paper, run_args.resume, run_args.output_dir, run_args.overwrite = args.paper, folder, folder, False
    return run_args
