"""MAH's engine: the network and optimiser, one outer iteration (epochs over a seeded
database sample, then DCC of every head's database codes), evaluation, and the training
of one target code length with its checkpoints (docs/MAH.md).
"""
import copy
import os
import time

import numpy as np
import torch

from utils import distributed, metrics, retrieval
from utils.data.feeder import Feeder
from utils.data.labels import item_names, label_matrix
from utils.errors import PROGRESS, UserError
from utils.mah.adsh import (ADSHLoss, adsh_objective, class_codes, dcc_update, label_codes, nested_class_codes,
                            soft_products, soft_ratio, stack_codes)
from utils.mah.args import arguments, aux_lengths
from utils.models import MAHNet, autocast, forward_batches, to_codes
from utils.progress import Bar
from utils.runs import JsonLog, check_finite, check_writer, load_checkpoint, load_state, save_checkpoint


def encode(model, feeder, batch_size, order=None, shared=False):
    """Every head's codes (list of n x c_k ±1) for the items `order` of the feeder's part
    (default: all), in eval mode. shared: every process encodes its share of the items and
    all get every code (under torchrun; all must call)."""
    order = np.arange(len(feeder)) if order is None else order
    mine = order[distributed.shard(len(order))] if shared else order
    outputs = forward_batches(model, feeder.batches(mine, batch_size))  # per batch: one B x c_k per head
    codes = [to_codes(torch.cat(head)) for head in zip(*outputs)]
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

def build_model(args, lengths, device, backbone):
    """The network of one target length and its optimiser. backbone: (module, features, RNG
    state after building it), built once per run; each length trains a copy, and its heads
    start from the generator state a fresh build leaves, so every length starts alike."""
    module, features, rng_state = backbone
    torch.set_rng_state(rng_state)
    # channels-last convolutions are about 25% faster on the CPU and use tensor cores on GPUs
    model = MAHNet(copy.deepcopy(module), features, lengths,
                   cascade=args.arch == "cascade").to(device, memory_format=torch.channels_last)
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
    head (V updated in place). Returns the log record's training fields, with the seconds of
    its two phases. The losses stay on the device until the end of the epochs (one read).

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
    tic = time.time()
    # the last epoch's losses per head, summed over its batches, and every batch's loss (finite, or
    # the run stops), on the device: read once, after the epochs (float64, as the sums always were)
    head_loss = torch.zeros(len(lengths), dtype=torch.float64, device=db_labels.device)
    total = torch.zeros((), dtype=torch.float64, device=db_labels.device)
    batches = 0
    for epoch in range(args.epochs):
        last = epoch == args.epochs - 1
        # fixed order, no shuffling; each process gets its share of every batch (all of it in one process)
        for pos, x in db.batches(sample, args.batch_size, generator, share=distributed.shard(args.batch_size)):
            # each process's loss is a mean over its share: weighted so that DDP's average of the
            # gradients over processes is the gradient of the mean over the whole batch
            start = int(pos[0]) // args.batch_size * args.batch_size
            weight = distributed.world_size() * len(pos) / min(args.batch_size, m - start)
            pos = pos.to(db_labels.device, non_blocking=True)
            with autocast(args.amp, x.device):  # the backbone only: the heads' outputs are float32
                outputs = model(x.contiguous(memory_format=torch.channels_last))  # one B x c_k per head
            SV, S2 = soft_products(sample_labels[pos], db_labels, stacked, column_sums, r, lengths, single)
            parts = [loss(u, v, index[pos], g, sv, S2) for loss, u, v, g, sv in zip(losses, outputs, V, grams, SV)]
            loss = weight * sum(w * p for w, p in zip(args.head_weights, parts))
            total += loss.detach()
            if last:  # U holds the outputs of the last epoch, taken before each step
                for u_all, u in zip(U, outputs):
                    u_all[pos] = u.detach()
                head_loss += weight * torch.stack(parts).detach().double()
                batches += 1
            opt.zero_grad()
            loss.backward()
            opt.step()
    if not torch.isfinite(total):
        raise UserError(f"the loss became {total.item()} in outer iteration {it}; lower --lr (now "
                        f"{opt.param_groups[0]['lr']:g}) or --gamma")
    for u in U:
        distributed.sum_(u)
    head_loss = distributed.sum_(head_loss).cpu().numpy() / distributed.world_size()
    seconds = {"training": time.time() - tic}
    tic = time.time()
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
    seconds["v_update"] = time.time() - tic
    return {"bits": c0, "iteration": it, "lr": lr, "loss": (head_loss / max(batches, 1)).tolist(),
            "objective": objective, "sign_zeros": zeros, "phase_seconds": seconds}


def writer(args, lengths):
    """What a checkpoint of this run records of its writer, checked when it is resumed."""
    return {"kind": f"MAH-{args.arch}", "lengths": list(lengths), "backbone": args.backbone}


def divergence_advice(args, opt):
    return f"lower --lr (now {opt.param_groups[0]['lr']:g}) or --gamma (now {args.gamma:g})"


def train_length(args, data, c0, device, out_dir, backbone, pool="database", train_labels=None):
    """Train and evaluate one target code length (backbone: see build_model); returns the
    final metrics, the retrieval examples, the seconds, the code lengths and the weights.
    pool: the part trained on, whose codes V DCC learns (the database, or under unseen
    classes the training part); train_labels: the labels the loss and DCC see (noisy under
    --label-noise; default: the pool's own)."""
    lengths = (c0, *aux_lengths(args, c0))
    model, opt = build_model(args, lengths, device, backbone)
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
            check_writer(ckpt, ckpt_path, wrote, advice)
            load_state(model, ckpt["model"], ckpt_path, advice)
            load_state(opt, ckpt["optimizer"], ckpt_path, advice)
            V = [v.to(device) for v in ckpt["V"]]
            start, seconds = ckpt["iteration"] + 1, ckpt["seconds"]
    if main_process:  # the iterations after the checkpoint are done again: their old lines go
        log.keep(lambda r: r.get("bits") != c0 or r.get("iteration", start) < start)
    net = distributed.wrap(model)  # under torchrun: DDP (gradients averaged over processes)
    bar = Bar(args.max_iter, start, f"{c0} bits", "outer iteration", main_process)
    for it in range(start, args.max_iter):
        PROGRESS.update(where=f"in outer iteration {it + 1} of {args.max_iter} at {c0} bits ({it} of them in the "
                              "checkpoint)")
        tic = time.time()
        record = train_one_iteration(args, c0, it, net, opt, losses, V, db, db_labels, single)
        check_finite(model, f"after outer iteration {it}", divergence_advice(args, opt))
        seconds += time.time() - tic
        if (it + 1) % args.eval_every == 0 or it == args.max_iter - 1:
            tic = time.time()
            result = record["metrics"] = evaluate(model, queries, V, data, args.batch_size, retrieval_db)
            record["phase_seconds"]["evaluation"] = time.time() - tic
        if not main_process:
            continue
        record["seconds"] = round(seconds, 2)
        record["phase_seconds"] = {k: round(v, 3) for k, v in record["phase_seconds"].items()}
        log.write(**record)
        bar.set_loss(float(np.dot(args.head_weights[:len(lengths)], record["loss"])))
        save_checkpoint(ckpt_path, {"bits": c0, "iteration": it, "seconds": seconds, "model": model.state_dict(),
                                    "optimizer": opt.state_dict(), "V": [v.cpu() for v in V],
                                    "args": arguments(args), "written_by": writer(args, lengths)})
        bar.update()
    bar.close()
    if start >= args.max_iter:  # resumed after the last iteration had finished
        result = evaluate(model, queries, V, data, args.batch_size, retrieval_db)
    if not main_process:
        return None
    first = np.arange(min(retrieval.QUERIES, len(queries)))
    database = V[0] if retrieval_db is None else encode(model, retrieval_db, args.batch_size)[0]
    retrieval.warn_if_collapsed(database, data.database.labels, data.info.classes)
    shown = retrieval.examples(encode(model, queries, args.batch_size, first)[0], database, data.query.labels[first],
                               data.database.labels, item_names(data, "query", args.data_root),
                               item_names(data, "database", args.data_root))
    return result, shown, seconds, lengths, getattr(model.backbone, "pretrained_from", None)
