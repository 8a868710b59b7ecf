"""Several processes under torchrun (torch.distributed): the process group, each process's
share of a batch, and the few collectives the training loops need.

Without torchrun there is no process group and every function is the single-process
identity, so the loops read the same either way. Under torchrun there is a process group
even for one process (`--nproc_per_node 1`), which runs the collectives, NCCL's included, on
a machine with one GPU. Backend: NCCL when the processes use GPUs, gloo on CPUs. Rank 0 is
the one that writes files.
"""
import contextlib
import datetime
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from utils.errors import UserError

# How long a process waits for the others at a collective before the run fails; rank 0
# evaluates alone while the others wait at the next step, so this covers an evaluation.
TIMEOUT = datetime.timedelta(minutes=30)


def launched():
    """Started by torchrun (or another launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(gpu):
    """Join torchrun's process group; returns this process's device (None without torchrun).

    gpu: the scripts' --gpu: 'cpu' keeps every process on the CPU (gloo); otherwise each
    process takes the GPU of its LOCAL_RANK (NCCL) when CUDA is there.
    """
    if not launched():
        return None
    cuda = str(gpu).lower() != "cpu" and torch.cuda.is_available()
    if not cuda:
        dist.init_process_group("gloo", timeout=TIMEOUT)
        return torch.device("cpu")
    local, count = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
    if local >= count:
        raise UserError(f"torchrun started process {local} on a machine with {count} CUDA device(s), one "
                        f"per process: use --nproc_per_node {count} or fewer")
    device = torch.device("cuda", local)
    torch.cuda.set_device(device)
    # bound to its GPU, the group's barriers and object broadcasts use that GPU, not a guess
    dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
    return device


def cleanup():
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(gpu):
    """setup(gpu) for the body of a main (its device, None without torchrun), then cleanup().

    A body that ends well waits for the others before the group goes: rank 0 evaluates and
    writes alone after the last collective, and a process that tore down its connections
    meanwhile has been seen to abort (SIGABRT) in gloo, failing a finished run."""
    device = setup(gpu)
    try:
        yield device
        barrier()
    finally:
        cleanup()


def describe():
    """', N processes (backend)' under torchrun, '' in one plain process: for a run's first line."""
    if not dist.is_initialized():
        return ""
    n = world_size()
    return f", {n} process{'es' if n > 1 else ''} ({dist.get_backend()})"


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main():
    return rank() == 0


def shard(n):
    """This process's positions among n batch items: every world_size-th, from its rank."""
    return slice(rank(), n, world_size())


def sum_(tensor):
    """Sum over processes, in place; returns the tensor."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def broadcast_(tensor):
    """Rank 0's values everywhere, in place; returns the tensor."""
    if dist.is_initialized():
        dist.broadcast(tensor, 0)
    return tensor


def broadcast_object(obj):
    """Rank 0's (picklable) object in every process."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def gather_rows(x, n):
    """All n rows of which this process holds its share (rows rank, rank + world_size, ...; see
    shard), in order, in every process."""
    if not dist.is_initialized():
        return x
    padded = x.new_zeros((-(-n // world_size()), *x.shape[1:]))  # every share padded to the longest
    padded[:len(x)] = x
    return gather_batch(padded)[:n]  # the padding rows land past row n


class _GatherShares(torch.autograd.Function):
    """Equal shares -> the whole batch in order; the gradient of every process's loss
    reaches the rows it came from (summed over processes)."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.stack(parts, 1).flatten(0, 1)  # row i of process r is row i * w + r

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad.view(-1, world_size(), *grad.shape[1:])[:, rank()]


def gather_batch(x):
    """The whole batch of which every process holds an equal share (see shard), in order,
    differentiable: a loss on it sends its gradient back to each share's process."""
    return _GatherShares.apply(x) if dist.is_initialized() else x


def unwrap(model):
    """The model inside DDP (the model itself outside)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def barrier():
    """Wait for every process; a process that stopped on the way (rank 0 failing a check of
    its inputs, say) is one line here too, not a traceback from the collective."""
    if dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"process {rank()}: another process of the run stopped ({first[:120]}); its error says "
                            "why") from None


def wrap(model):
    """The model as DDP trains it (gradients averaged over processes); the model itself in one process.

    On GPUs batch norm becomes SyncBatchNorm (statistics of the whole batch, as in one
    process); gloo has no SyncBatchNorm, so on CPUs each process normalises its share.
    """
    if not dist.is_initialized():
        return model
    device = next(model.parameters()).device
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)
