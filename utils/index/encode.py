"""Models and images: a trained model as an encoder, the images a source names, and their codes.

Images are decoded to uint8 in DataLoader worker processes, into pinned memory when the model
is on CUDA (on the CPU, in turns with the forward pass); each batch goes to the device in one
transfer and is normalised there."""
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from utils import mah, mmhh
from utils.data.cifar10 import IMAGE_SUFFIXES
from utils.data.feeder import Feeder, default_workers
from utils.data.images import FileImages, Normalise, file_transform, open_rgb
from utils.data.listfiles import read_lines
from utils.errors import UserError


def load_encoder(path, device):
    """The Encoder (utils.models) of a MAH run folder or a train_mmhh.py snapshot (with or
    without .pt): each method says how its model makes codes."""
    return (mah if os.path.isdir(path) else mmhh).load_encoder(path, device)


def transform_of(preprocessing):
    """The PIL -> uint8 tensor part of a model's evaluation transform (`network_input` does the rest)."""
    p = preprocessing
    return file_transform(p["resize"], p["crop"], square=p["square"])


def network_input(encoder):
    """The rest of the encoder's evaluation transform: B x 3 x S x S uint8 images -> its input,
    normalised on its device (made once per encoding, not per batch)."""
    p = encoder.preprocessing
    return Normalise(p["mean"], p["std"], encoder.device)


def image_files(source):
    """(names, paths, labels or None) of the images a source names: a folder tree (every image
    file below it, in sorted path order, named by its path under the folder), a HashNet-style
    list file (`path l1 ... lC` or `path c`) or a list of one image path a line."""
    if os.path.isdir(source):
        paths = sorted(os.path.join(top, f) for top, _, files in os.walk(source) for f in files
                       if f.lower().endswith(IMAGE_SUFFIXES))
        if not paths:
            raise UserError(f"--images {source} holds no image files ({', '.join(IMAGE_SUFFIXES)}); check the folder")
        return [os.path.relpath(p, source) for p in paths], paths, None
    if not os.path.isfile(source):
        raise UserError(f"--images {source} is neither a folder of images nor a list file; check the path")
    lines = read_lines(source)
    root = os.path.dirname(os.path.abspath(source))
    labelled = all(len(line.split()) > 1 for _, line in lines)
    names = [line.split()[0] if labelled else line for _, line in lines]
    paths = [n if os.path.isabs(n) else os.path.join(root, n) for n in names]
    labels = None
    if labelled:
        rows = [[int(t) for t in line.split()[1:]] if all(t.isdigit() for t in line.split()[1:]) else None
                for _, line in lines]
        labels = np.array(rows) if all(r is not None for r in rows) and len({len(r) for r in rows}) == 1 else None
    return names, paths, labels


def read_image(path, transform, where):
    try:
        return transform(open_rgb(path))
    except Exception as e:  # PIL raises OSError and, for some broken files, other errors
        raise UserError(f"{where}: image {path} cannot be read ({type(e).__name__}); replace it or leave it out") \
            from None


class _Files(torch.utils.data.Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return read_image(self.paths[i], self.transform, f"image {i}")


def lowest_priority(_):
    """A decoding worker's start on the CPU: the forward pass takes every core, and a worker that
    competed with it would stall its threads; at the lowest priority the little the workers
    decode during the forward pass's turn (their prefetch) yields to it."""
    os.setpriority(os.PRIO_PROCESS, 0, 19)  # 19 whatever the parent's niceness (os.nice would add to it)


TURN_BYTES = 2 ** 28  # on the CPU, the decoded images a turn of decoding holds: 256 MB


def in_turns(batches, memory=TURN_BYTES):
    """The image batches, fetched a turn at a time: up to `memory` bytes of them (at least one batch)
    are taken before the first of them is given. On the CPU the decoding workers then fill a
    turn with every core while the forward pass waits, and the forward pass runs it with every
    core while the workers wait (but for their few batches of prefetch): interleaved, a worker
    that takes a core from the forward pass stalls its other threads at their next barrier."""
    held, size = [], 0
    for x in batches:
        held.append(x)
        size += x.nbytes
        if size >= memory:
            yield from held
            held, size = [], 0
    yield from held


def encode_dataset(encoder, images, batch_size, workers, progress=True):
    """N x K codes of a Dataset of 3 x S x S uint8 images (or of (image, i) pairs), in batches;
    workers None: the cores (at most 4), at the lowest priority when the model is on the CPU,
    where decoding and the forward pass take turns (in_turns); on CUDA they overlap."""
    cpu = encoder.device.type == "cpu"
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size,
                                         num_workers=default_workers() if workers is None else workers,
                                         pin_memory=not cpu, worker_init_fn=lowest_priority if cpu else None)
    prepared = network_input(encoder)
    batches = (x[0] if isinstance(x, (list, tuple)) else x for x in loader)  # the images, without their ids
    batches = in_turns(batches) if cpu and loader.num_workers else batches
    out = [encoder.codes(prepared(x))
           for x in tqdm(batches, desc="encoding", unit="batch", total=len(loader),
                         disable=None if progress else True, file=sys.stderr)]
    return torch.cat(out) if out else torch.zeros(0, encoder.bits)


def encode_files(encoder, paths, batch_size, workers, progress=True):
    """N x K codes of image files."""
    return encode_dataset(encoder, _Files(paths, transform_of(encoder.preprocessing)), batch_size, workers, progress)


def encode_part(encoder, data, part, batch_size, workers):
    """N x K codes of a data set part: list-file images through the data layer's reader, in
    workers; arrays through the data layer's own preprocessing on the device."""
    p = encoder.preprocessing
    if data.images is None:
        return encode_dataset(encoder, FileImages(getattr(data, part).list, transform_of(p)), batch_size, workers)
    feeder = Feeder(data, part, encoder.device, False, p["resize"], p["crop"], workers=0, square=p["square"],
                    mean=p["mean"], std=p["std"])
    order = np.arange(len(feeder))
    out = [encoder.codes(x) for _, x in tqdm(feeder.batches(order, batch_size), desc="encoding", unit="batch",
                                             total=-(-len(order) // batch_size), disable=None, file=sys.stderr)]
    return torch.cat(out)
