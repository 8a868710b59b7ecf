"""MMHH's engine: one training step (the schedules, the pair loss against the batch or the
memory bank, the quantization loss, the optimiser step, the memory update) and the loop
over epochs with its checkpoints, ending in the snapshot (docs/MMHH.md).
"""
import os
import sys
import time

import numpy as np
import torch

from utils import distributed, options
from utils.data.labels import label_matrix, similarity
from utils.errors import PROGRESS, UserError
from utils.mmhh import common
from utils.mmhh.args import warmup_iterations
from utils.mmhh.losses import pair_loss, parse_margin_params, quantization
from utils.mmhh.memory import Memory
from utils.mmhh.optim import build_optimizer, learning_rate, set_learning_rate, weight_decay
from utils.models import autocast
from utils.progress import Bar
from utils.runs import JsonLog, check_finite, load_state, save_checkpoint


def continuation_scale(t):
    """HashNet's tanh scale at iteration t: raised to sqrt(1 + 0.005 f) at every 200th forward f."""
    return (1 + 0.005 * 200 * ((t + 1) // 200)) ** 0.5


def train_one_step(args, t, model, opt, memory, x, L1, index, margins, similar_weight_default):
    """Iteration t on the batch x (b images, labels L1: b x C, training-set rows index): the
    schedules, the pair and quantization losses, one optimizer step, the memory update.
    Returns the learning rate, the similar weight and this process's weighted share of the
    [pair, quantization, total] losses (a tensor on the device: nothing is read back per step).

    Under torchrun x is this process's share of the batch: the batch's outputs and labels are
    gathered (the second operand of the pair loss and the memory update see all of them), the
    similar weight and the losses' normalisers are the whole batch's, and each process's loss
    is weighted so that DDP's average of the gradients is the gradient of the whole loss."""
    lr = learning_rate(args.lr_schedule_type, t, args.lr, args.decay_step)
    set_learning_rate(opt, lr)
    if args.image_loss_type == "HashNet":
        distributed.unwrap(model).scale.fill_(continuation_scale(t))
    with autocast(args.amp, x.device):  # the backbone only: h is float32
        h = model(x.contiguous(memory_format=torch.channels_last))  # b x K
    h_all, L1_all = distributed.gather_batch(h), distributed.gather_batch(L1)  # B x K, B x C
    H2, L2 = memory.operand(t, h_all, L1_all) if memory is not None else (h_all, L1_all)
    S = similarity(L1, L2)  # b x B or b x N: this share's rows
    S_all = S if S.shape[0] == len(L1_all) else similarity(L1_all, L2)  # the whole pair matrix
    processes = distributed.world_size()
    pair, share, w_s = pair_loss(args, h, H2, S, S_all, margins, similar_weight_default)
    pair_weight = processes * share
    quant = quantization(args, h)  # a mean over the rows
    quant_weight = processes * len(h) / len(h_all)
    loss = pair_weight * pair + args.loss_lambda * quant_weight * quant
    opt.zero_grad()
    loss.backward()
    opt.step()
    if memory is not None:
        memory.update(t, distributed.gather_batch(index), h_all)
    # summed over the processes (at the log lines), the whole batch's losses
    return lr, w_s, torch.stack([pair_weight * pair.detach(), quant_weight * quant.detach(), loss.detach()]) / processes


def check_loss(sums, t, lr):
    """The losses summed since the last log line are finite, or the run stops."""
    if not torch.isfinite(sums).all():
        raise UserError(f"the loss became {sums[2].item()} by iteration {t}; lower --lr (now {lr:g})")


def train(args, data, model, ckpt, device, run_dir, snapshot, train_labels):
    """Train from the checkpoint `ckpt` (None: from the start) with the training images' labels
    `train_labels` (noisy under --label_noise) and write the snapshot; returns the seconds
    trained (None in the processes other than rank 0)."""
    main_process = distributed.is_main()
    info = data.info
    model = model.to(device, memory_format=torch.channels_last)
    opt = build_optimizer(model, args.optimizer, args.lr, weight_decay(args.lr_schedule_type, args.weight_decay))
    train = common.feeders(data, "train", device, args, train=True)
    labels = label_matrix(train_labels, info.classes, device)  # N x C
    n = len(train)
    B = min(args.batch_size, n)
    per_epoch = n // B  # full batches only: every pair matrix has the same size
    margins = parse_margin_params(args.margin_params)

    memory = None
    if args.batch_type == "BatchInitMem":
        if args.semi_init_type == "MODEL":
            start_codes = common.encode(model, common.feeders(data, "train", device, args), np.arange(n), B)
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
    bar = Bar(args.num_iters, t, f"{args.distance_type} {args.hash_bit} bits", "iteration", main_process)
    # the losses since the last log line, on the device (float64, as the sums always were): read at log lines
    sums, count, saved = torch.zeros(3, dtype=torch.float64, device=device), 0, t
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
            index = torch.as_tensor(order[pos.numpy()]).to(device, non_blocking=True)  # no wait for the device
            lr, w_s, parts = train_one_step(args, t, net, opt, memory, x, labels[index], index, margins,
                                            info.similar_weight)
            sums += parts.double()
            count += 1
            t += 1
            if t % args.log_every == 0 or t == args.num_iters:
                mean = (distributed.sum_(sums) / count).tolist()  # every process: the sum is collective
                if main_process:
                    check_loss(sums, t, lr)
                    check_finite(model, f"at iteration {t}", f"lower --lr (now {lr:g})")
                    record = {"iteration": t, "lr": lr, "pair_loss": mean[0], "quantization_loss": mean[1],
                              "loss": mean[2], "similar_weight": float(w_s), "scale": float(model.scale),
                              "seconds": round(seconds + time.time() - tic, 2)}
                    log.write(**record)
                    if board:
                        for key in ("lr", "pair_loss", "quantization_loss", "loss"):
                            board.add_scalar(key, record[key], t)
                    bar.set_loss(mean[2])
                sums, count = torch.zeros_like(sums), 0
            bar.update()
        seconds += time.time() - tic
        # at epoch ends only, so that a resumed run sees the batches an uninterrupted one would
        if main_process:
            check_loss(sums, t, opt.param_groups[0]["lr"])
            check_finite(model, f"at iteration {t}", f"lower --lr (now {opt.param_groups[0]['lr']:g})")
            save_checkpoint(ckpt_path, state(model, opt, memory, t, seconds, args))
            saved = t
    bar.close()
    if not main_process:
        return None
    check_finite(model, f"at iteration {t}", f"lower --lr (now {opt.param_groups[0]['lr']:g})")
    save_checkpoint(snapshot, state(model, opt, memory, t, seconds, args))
    print(f"snapshot: {snapshot}")
    return seconds


def state(model, opt, memory, t, seconds, args):
    """What checkpoints and snapshots hold: state_dicts, memory, iteration, seconds, arguments, writer."""
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": t, "seconds": seconds,
            "memory": None if memory is None else memory.codes.cpu(), "args": options.public(args),
            "written_by": common.writer(args)}


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
