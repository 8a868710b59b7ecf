"""MAH (Luo et al., arXiv:1809.09329): the one argument parser and main() of the six scripts.

Each script sets its paper defaults (spec MAH.md, "Per-script defaults") and calls main.
Per target code length c0: a shared backbone with three heads (c0 and two auxiliary
lengths), the ADSH loss per head weighted and summed, and the database codes of every
head learned by DCC once per outer iteration. Retrieval: sign of head 0 for queries,
V of head 0 for the database.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from utils import distributed, metrics, options, retrieval
from utils.data import protocols
from utils.adsh import (ADSHLoss, adsh_objective, class_codes, dcc_update, label_codes, nested_class_codes,
                        soft_products, soft_ratio, stack_codes)
from utils.data.loader import load_data
from utils.errors import PROGRESS, UserError
from utils.data.feeder import Feeder
from utils.data.labels import item_names, label_matrix
from utils.models import MAHNet, build_backbone
from utils.options import Parser, check_resumed, nonnegative_float, nonnegative_int, numbers, positive_float
from utils.runs import (JsonLog, RunFolder, check_device, check_finite, choose_device, command_line,
                        default_output_dir, device_name, git_commit, load_checkpoint, load_state, read_json,
                        save_checkpoint, thread_counts, write_json)

# Training sizes and recipe per preset; None falls back to the script's paper defaults.
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
    p.add_argument("--dataset", help="data set name from utils/datasets.py (default: the script's)")
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
    p.add_argument("--seed", type=options.seed, default=0, help="seed of the split, sampling and initialisation "
                                                                "(default: 0)")
    p.add_argument("--gpu", default="0", help="CUDA device number, or 'cpu' (default: 0; the CPU when there is no "
                                              "CUDA; under torchrun each process takes the GPU of its local rank, "
                                              "or the CPU with 'cpu')")
    p.add_argument("--workers", type=nonnegative_int, default=4, help="DataLoader workers for list-file data "
                                                                      "(default: 4)")
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
    preset = PRESETS[args.preset]
    for key in set(preset) | set(PAPER_KEYS) | {"lr", "optimizer", "lr_steps", "backbone", "pretrained", "augment",
                                                "v_init", "v_hold"}:
        if getattr(args, key, None) is None:
            setattr(args, key, preset.get(key, args.paper.get(key)))
    args.bits = numbers(args.bits, "--bits", int, unique=True)
    for c in args.bits:
        if not 1 <= c <= 64:
            raise UserError(f"--bits {c}: code lengths must be 1 to 64")
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
    if args.aux_bits:
        aux = numbers(args.aux_bits, "--aux-bits (c1,c2)", int, count=2)
    else:  # the script's lengths belong to the paper's recipe; every other preset has the one rule
        aux = args.paper.get("aux_for", {}).get(c0) if args.preset == "paper" else None
        aux = aux or (2 * c0, 4 * c0)
    if min(aux) < c0 or max(aux) > 1024:
        raise UserError(f"--aux-bits {aux[0]},{aux[1]}: auxiliary codes must be at least as long as the target "
                        f"({c0} bits) and at most 1024 bits")
    return tuple(aux)


@torch.no_grad()
def encode(model, feeder, batch_size, order=None, shared=False):
    """sign of every head's output (list of n x c_k), exact zeros mapped to +1, for the items
    `order` of the feeder's part (default: all), in eval mode. shared: every process encodes
    its share of the items and all get every code (under torchrun; all must call)."""
    model.eval()
    order = np.arange(len(feeder)) if order is None else order
    mine = order[distributed.shard(len(order))] if shared else order
    outputs = [model(x) for _, x in feeder.batches(mine, batch_size)]
    model.train()
    codes = [torch.where(torch.cat(head) >= 0, 1.0, -1.0) for head in zip(*outputs)]
    return [distributed.gather_rows(c, len(order)) for c in codes] if shared else codes


def retrieval_metrics(q, V, ql, dl):
    """The original's MAP (whole ranking, ties by index, empty queries 0), tie-aware MAP and
    its mAP@5000 (logged as "TopK@Pre" / topkpre) of query codes q against database codes V."""
    return {
        "map": metrics.mean_average_precision(q, V, ql, dl),
        "map_tie_aware": metrics.mean_average_precision(q, V, ql, dl, ties="expected"),
        "map_at_5000": metrics.mean_average_precision(q, V, ql, dl, topk=5000),
    }


def evaluate(model, query_feeder, V, data, batch_size, database_feeder=None):
    """Metrics of the target head (sign of head 0 against V[0]) and true precision@5000;
    under "aux", each auxiliary head's signs against its own V, as the original logged them.
    database_feeder: a retrieval database that is not the training database (unseen classes):
    its codes are the network's, as for queries. Under torchrun every process encodes its
    share; rank 0 alone computes the metrics (None elsewhere)."""
    codes = encode(model, query_feeder, batch_size, shared=True)
    if database_feeder is not None:
        V = encode(model, database_feeder, batch_size, shared=True)
    if not distributed.is_main():
        return None
    ql, dl = data.query.labels, data.database.labels
    result = retrieval_metrics(codes[0], V[0], ql, dl)
    result["precision_at_5000"] = metrics.precision_at_k(codes[0], V[0], ql, dl, 5000)
    result["pr_by_radius"] = retrieval.pr_curve(codes[0], V[0], ql, dl)
    result["aux"] = [dict(bits=v.shape[1], **retrieval_metrics(q, v, ql, dl)) for q, v in zip(codes[1:], V[1:])]
    return result


# ------------------------------------------------------------------------- training

def build_model(args, lengths, device):
    torch.manual_seed(args.seed)  # the initialisation comes from --seed
    backbone, features = build_backbone(args.backbone, args.pretrained, args.weights)
    # channels-last convolutions are about 25% faster on the CPU and use tensor cores on GPUs
    model = MAHNet(backbone, features, lengths, cascade=args.arch == "cascade").to(device,
                                                                                 memory_format=torch.channels_last)
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=5e-4)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, weight_decay=5e-4, momentum=args.momentum)
    return model, opt


def initial_codes(args, db_labels, lengths, seed):
    """V of every head before training (n x c_k each): zeros, or codes of the labels."""
    if args.v_init == "zeros":
        return [torch.zeros(len(db_labels), c, device=db_labels.device) for c in lengths]
    # labels: one seed per head, so that heads of equal length differ; nested: see nested_class_codes
    C = db_labels.shape[1]
    books = ([class_codes(C, c, seed + k) for k, c in enumerate(lengths)] if args.v_init == "labels"
             else nested_class_codes(C, lengths, seed))  # C x c each
    return [label_codes(db_labels, B) for B in books]


def train_one_iteration(args, c0, it, model, opt, losses, V, db, db_labels, single):
    """Outer iteration `it`: epochs over a seeded database sample, then the DCC step of every
    head (V updated in place). Returns the log record's training fields.

    Under torchrun every process draws the same sample and the same batches (augmentation
    included) and trains on its share of each batch; U is summed over the processes (each
    filled its own rows), so DCC sees the whole sample's outputs."""
    n, m, lengths = len(db_labels), min(args.num_samples, len(db_labels)), [v.shape[1] for v in V]
    sample = np.random.default_rng([args.seed, c0, it]).permutation(n)[:m]  # m database items
    index = torch.as_tensor(sample, device=db_labels.device)
    sample_labels = db_labels[index]  # m x C
    r = soft_ratio(sample_labels, db_labels, single)
    # constants while V is: the Gram matrices, and [V_0 V_1 V_2 1] whose product with a
    # batch's similarity rows gives every head's S V and the similar-pair counts at once
    grams = [v.T @ v for v in V]  # c_k x c_k
    stacked, column_sums = stack_codes(V)  # n x (c0 + c1 + c2 + 1), its column sums
    U = [torch.zeros(m, c, device=db_labels.device) for c in lengths]
    generator = torch.Generator().manual_seed(args.seed * 1_000_003 + c0 * 10_007 + it)  # augmentation
    # dropout (AlexNet, VGG) draws from the global generator: seeded per outer iteration, so that
    # a resumed run draws as a whole one
    torch.manual_seed(int(np.random.default_rng([args.seed, c0, it, 1]).integers(2 ** 62)))
    head_loss = np.zeros(len(lengths))
    batches = 0
    for epoch in range(args.epochs):
        last = epoch == args.epochs - 1
        # fixed order, no shuffling; each process gets its share of every batch (all of it in one process)
        for pos, x in db.batches(sample, args.batch_size, generator, share=distributed.shard(args.batch_size)):
            # each process's loss is a mean over its share: weighted so that DDP's average of the
            # gradients over processes is the gradient of the mean over the whole batch
            start = int(pos[0]) // args.batch_size * args.batch_size
            weight = distributed.world_size() * len(pos) / min(args.batch_size, m - start)
            pos = pos.to(db_labels.device)
            outputs = model(x.contiguous(memory_format=torch.channels_last))  # one B x c_k per head
            SV, S2 = soft_products(sample_labels[pos], db_labels, stacked, column_sums, r, lengths, single)
            parts = [loss(u, v, index[pos], g, sv, S2) for loss, u, v, g, sv in zip(losses, outputs, V, grams, SV)]
            loss = weight * sum(w * p for w, p in zip(args.head_weights, parts))
            if not torch.isfinite(loss):
                raise UserError(f"the loss became {loss.item()} at iteration {it}; lower --lr (now "
                                f"{opt.param_groups[0]['lr']:g}) or --gamma")
            if last:  # U holds the outputs of the last epoch, taken before each step
                for u_all, u in zip(U, outputs):
                    u_all[pos] = u.detach()
                head_loss += [weight * p.item() for p in parts]
                batches += 1
            opt.zero_grad()
            loss.backward()
            opt.step()
    for u in U:
        distributed.sum_(u)
    head_loss = distributed.sum_(torch.as_tensor(head_loss, device=db_labels.device)).cpu().numpy()
    head_loss /= distributed.world_size()
    lr = opt.param_groups[0]["lr"]
    if it in args.lr_steps:
        for group in opt.param_groups:
            group["lr"] /= 10
    zeros = [0] * len(V)
    if it >= args.v_hold:  # held codes are fixed targets while the network learns to tell classes apart
        zeros = [dcc_update(v, u, index, sample_labels, db_labels, r, args.gamma, single) for v, u in zip(V, U)]
        for v in V:  # every process computed the same V; rank 0's is made everyone's against float drift
            distributed.broadcast_(v)
    # the whole ADSH objective of every head after the V step (the original's calc_loss); one
    # pass over the sample's similarities gives every head's S V (m x c_k) and sum S^2
    SV, S2 = soft_products(sample_labels, db_labels, *stack_codes(V), r, lengths, single)
    objective = [adsh_objective(v, u, index, sv, S2, args.gamma) for v, u, sv in zip(V, U, SV)]
    return {"bits": c0, "iteration": it, "lr": lr, "loss": (head_loss / max(batches, 1)).tolist(),
            "objective": objective, "sign_zeros": zeros}


def check_sizes(data, args, pool):
    """Fail before anything is written when the processes cannot share the batches or queries."""
    m = min(args.num_samples, len(getattr(data, pool).labels))
    smallest = m % args.batch_size or min(args.batch_size, m)  # the last batch of an epoch
    if smallest < distributed.world_size():
        raise UserError(f"a batch of {smallest} items cannot be shared by {distributed.world_size()} processes; "
                        "choose --num-samples and --batch-size so that every batch has one item per process")
    if len(data.query.labels) < distributed.world_size():  # each encodes its share of the queries (see evaluate)
        raise UserError(f"the query set ({len(data.query.labels)} items) cannot be shared by "
                        f"{distributed.world_size()} processes: run with at most as many processes as queries")


def writer(args, lengths):
    """What a checkpoint of this run records of its writer, checked when it is resumed."""
    return {"kind": f"MAH-{args.arch}", "lengths": list(lengths), "backbone": args.backbone}


def divergence_advice(args, opt):
    return f"lower --lr (now {opt.param_groups[0]['lr']:g}) or --gamma (now {args.gamma:g})"


def train_length(args, data, c0, device, out_dir, pool="database", train_labels=None):
    """Train and evaluate one target code length; returns the final metrics and seconds.
    pool: the part trained on, whose codes V DCC learns (the database, or under unseen
    classes the training part); train_labels: the labels the loss and DCC see (noisy under
    --label-noise; default: the pool's own)."""
    lengths = (c0, *aux_lengths(args, c0))
    model, opt = build_model(args, lengths, device)
    # list-file crops keep at least 3/4 of the image, about what the 4-pixel shift keeps of 32x32 arrays
    feed = dict(resize=args.resize, crop=args.crop, augment=args.augment, workers=args.workers,
                crop_scale=(0.75, 1.0))
    db = Feeder(data, pool, device, True, **feed)
    queries = Feeder(data, "query", device, False, **feed)
    # a retrieval database other than the trained one gets the network's codes (see evaluate)
    retrieval_db = None if pool == "database" else Feeder(data, "database", device, False, **feed)
    train_labels = getattr(data, pool).labels if train_labels is None else train_labels
    db_labels = label_matrix(train_labels, data.info.classes, device)  # n x C
    single = bool((db_labels.sum(1) == 1).all())  # one label per item: similarity products factorise
    V = initial_codes(args, db_labels, lengths, args.seed * 1_000_003 + c0 * 10_007)
    losses = [ADSHLoss(args.gamma) for _ in lengths]
    start, seconds, result = 0, 0.0, None
    ckpt_path = os.path.join(out_dir, "checkpoint.pt")
    main_process = distributed.is_main()  # only rank 0 evaluates and writes
    log = JsonLog(os.path.join(out_dir, "log.jsonl"))
    if os.path.exists(ckpt_path):  # a resumed run (a new one never finds one: see RunFolder)
        advice = f"this is not the checkpoint of the run in {out_dir}; start afresh in another --output-dir"
        wrote = writer(args, lengths)
        ckpt = load_checkpoint(ckpt_path, {k: wrote[k] for k in ("kind", "backbone")}, advice)
        if ckpt.get("bits") == c0:  # else the checkpoint of a length finished before
            ckpt = load_checkpoint(ckpt_path, wrote, advice)
            load_state(model, ckpt["model"], ckpt_path, advice)
            load_state(opt, ckpt["optimizer"], ckpt_path, advice)
            V = [v.to(device) for v in ckpt["V"]]
            start, seconds = ckpt["iteration"] + 1, ckpt["seconds"]
    if main_process:  # the iterations after the checkpoint are done again: their old lines go
        log.keep(lambda r: r.get("bits") != c0 or r.get("iteration", start) < start)
    net = distributed.wrap(model)  # under torchrun: DDP (gradients averaged over processes)
    bar = tqdm(range(start, args.max_iter), desc=f"{c0} bits", initial=start, total=args.max_iter,
               disable=None if main_process else True, file=sys.stderr)
    for it in bar:
        PROGRESS.update(where=f"in outer iteration {it + 1} of {args.max_iter} at {c0} bits ({it} of them in the "
                              "checkpoint)")
        tic = time.time()
        record = train_one_iteration(args, c0, it, net, opt, losses, V, db, db_labels, single)
        check_finite(model, f"after outer iteration {it}", divergence_advice(args, opt))
        seconds += time.time() - tic
        if (it + 1) % args.eval_every == 0 or it == args.max_iter - 1:
            result = record["metrics"] = evaluate(model, queries, V, data, args.batch_size, retrieval_db)
        if not main_process:
            continue
        record["seconds"] = round(seconds, 2)
        log.write(**record)
        bar.set_postfix(loss=f"{float(np.dot(args.head_weights, record['loss'])):.4f}")
        save_checkpoint(ckpt_path, {"bits": c0, "iteration": it, "seconds": seconds, "model": model.state_dict(),
                                    "optimizer": opt.state_dict(), "V": [v.cpu() for v in V],
                                    "args": arguments(args), "written_by": writer(args, lengths)})
    if start >= args.max_iter:  # resumed after the last iteration had finished
        result = evaluate(model, queries, V, data, args.batch_size, retrieval_db)
    if not main_process:
        return None
    first = np.arange(min(retrieval.QUERIES, len(queries)))
    database = V[0] if retrieval_db is None else encode(model, retrieval_db, args.batch_size)[0]
    shown = retrieval.examples(encode(model, queries, args.batch_size, first)[0], database, data.query.labels[first],
                               data.database.labels, item_names(data, "query", args.data_root),
                               item_names(data, "database", args.data_root))
    return result, shown, seconds, lengths, getattr(model.backbone, "pretrained_from", None)


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
    saved = read_json(record, "run record")
    if saved.get("kind") == "MMHH" or "distance_type" in saved:
        raise UserError(f"{folder} holds a train_mmhh.py run; continue it with train_mmhh.py --resume")
    saved = read_json(record, "run record", keys=("script", "arch", "dataset", "bits", "preset"))
    if saved["script"] != args.script:
        raise UserError(f"{folder} holds a run of {saved['script']}.py, not {args.script}.py; continue it with "
                        f"python {saved['script']}.py --resume {folder}")
    if "overwrite" in options.given(args):
        raise UserError("--overwrite starts a new run and --resume continues one: give one of them")
    check_resumed(args, saved, RESUME_MAY_CHANGE + RESUME_MAY_MOVE, flag)
    moved = [k for k in RESUME_MAY_MOVE if k in options.given(args) and getattr(args, k) != saved.get(k)]
    for key in moved:
        print(f"notice: resuming with {flag(key)} {getattr(args, key)} instead of the run's {saved.get(key)}",
              file=sys.stderr)
    # defaults for runs from before these options; what run.json records beside the arguments goes
    run_args = argparse.Namespace(**{"v_init": "zeros", "v_hold": 0, "momentum": 0.0, "command": None,
                                     "missing_images": "error", "seen_fraction": 0.75, "label_noise": 0.0,
                                     **{k: v for k, v in saved.items() if k not in ("kind", "threads")}})
    for key in ("gpu", "workers", *moved):
        if key in options.given(args):
            setattr(run_args, key, getattr(args, key))
    run_args.paper, run_args.resume, run_args.output_dir, run_args.overwrite = args.paper, folder, folder, False
    return run_args


def main(args):
    """Train every --bits length; under torchrun (see README "Several GPUs") one of its processes."""
    device = distributed.setup(args.gpu)
    try:
        return _main(args, device)
    finally:
        distributed.cleanup()


def _main(args, device):
    PROGRESS.reset()
    args = resumed(args) if args.resume else resolve(args)
    check_device(args.gpu)
    if not args.resume:
        args.command = command_line()  # the command that can start this run again, kept across resumes
        # one folder for all processes: rank 0's (its default name holds the time)
        args.output_dir = distributed.broadcast_object(args.output_dir or default_output_dir(args.script))
    main_process = distributed.is_main()
    resume_command = f"python {args.script}.py --resume {args.output_dir}"
    folder = RunFolder(args.output_dir, "--output-dir", resume=bool(args.resume), overwrite=args.overwrite,
                       resume_hint=f"--resume {args.output_dir}")
    split_file = os.path.join(args.output_dir, "split.json")
    try:
        with folder.starting():  # nothing is removed or written until the inputs are checked
            if main_process:  # only rank 0 writes
                folder.claim()
            device = device or choose_device(args.gpu)
            if not main_process:  # rank 0 draws and saves the split first, the others read it
                distributed.barrier()
            data = load_data(args.dataset, args.data_root, args.image_root, args.path_prefix,
                             protocols.split_protocol(args.protocol, "dpsh"), args.seed,
                             split_file=split_file if args.resume or not main_process else None,
                             download=args.download, missing=args.missing_images)
            # MAH trains on its database (its seen items under unseen classes)
            data, pool, train_labels, protocol = protocols.prepare(data, args.protocol, args.seen_fraction,
                                                                   args.label_noise, args.seed, "database")
            check_sizes(data, args, pool)
            build_backbone(args.backbone, args.pretrained, args.weights)  # the weights are there and load
            if main_process:
                folder.start()
                data.save_split(split_file)
                write_json(folder.file("protocol.json"), protocol)  # the corrupted items, the unseen classes
                if not args.resume:
                    write_json(folder.file("run.json"), {**arguments(args), "command": args.command,
                                                         "kind": "MAH", "threads": thread_counts()})
                distributed.barrier()
        PROGRESS.update(resume=resume_command)
        return train_lengths(args, data, device, pool, train_labels, protocols.summary(protocol))
    finally:
        folder.release()


def train_lengths(args, data, device, pool, train_labels, protocol):
    main_process = distributed.is_main()
    method = f"MAH-{args.arch}"
    if main_process:
        print(f"{method} on {data.info.name} ({len(data.query.labels)} queries, {len(data.database.labels)} database), "
              f"preset {args.preset}, backbone {args.backbone}, device {device_name(device)}, commit {git_commit()}"
              + distributed.describe())
        if protocol["protocol"] == "unseen" or protocol["label_noise"]:
            print(f"protocol {protocol['protocol']}" + (f", unseen classes {protocol['unseen_classes']} "
                  f"({protocol['train_items']} training items)" if protocol["protocol"] == "unseen" else "")
                  + f", label noise {protocol['label_noise']:g} ({protocol['corrupted_items']} items)")
    rows = []
    for c0 in args.bits:
        path = os.path.join(args.output_dir, "results", f"{data.info.name}_{method}_{c0}bits.json")
        if os.path.exists(path):  # finished before the run was resumed
            rows.append(read_json(path, "results file", keys=("bits", "metrics", "seconds")))
            continue
        trained = train_length(args, data, c0, device, args.output_dir, pool, train_labels)
        if not main_process:
            continue
        result, shown, seconds, lengths, weights = trained
        record = {"dataset": data.info.name, "method": method, "bits": c0, "aux_bits": list(lengths[1:]),
                  "database_order": "seeded random", "weights": weights,
                  "preset": args.preset, "backbone": args.backbone, "seed": args.seed, "metrics": result,
                  "seconds": round(seconds, 1), "device": device_name(device), "git_commit": git_commit(),
                  "command": args.command or command_line(), "args": arguments(args), "retrieval": shown,
                  "world_size": distributed.world_size(), "threads": thread_counts(), "protocol": protocol}
        if args.resume:
            record["resumed_by"] = command_line()
        write_json(path, record)
        rows.append(record)
    if not main_process:
        return rows
    print(f"\n{'bits':>4} {'tie-aware MAP':>13} {'MAP (index ties)':>16} {'mAP@5000':>8} {'P@5000':>7} "
          f"{'minutes':>7}")
    for row in rows:
        r = row["metrics"]
        print(f"{row['bits']:>4} {r['map_tie_aware']:>13.4f} {r['map']:>16.4f} {r['map_at_5000']:>8.4f} "
              f"{r['precision_at_5000']:>7.4f} {row['seconds'] / 60:>7.1f}")
    return rows
