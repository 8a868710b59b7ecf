"""Batches of one part of a data set (query, database or train) as device tensors, for
both kinds of data set: in-memory arrays and list files (utils.data.images)."""
import os

import torch

from utils.data.images import ArrayImages, FileImages, Normalise, SeededItems, file_transform


def default_workers():
    """--workers when not given: the CPU cores this process may use, at most 4 (more workers
    than cores only make PyTorch warn and the workers compete)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(4, cores)


class _Batches:
    """The batch sampler of a feeder's one DataLoader: the batches of the pass about to start,
    as lists of SeededItems keys, set before each pass (the workers live on between passes)."""

    def __init__(self):
        self.groups = []

    def __iter__(self):
        return iter(self.groups)

    def __len__(self):
        return len(self.groups)


class Feeder:
    """Images of `part` in a given order, in batches, normalised and on `device`.

    train: apply the augmentation (when `augment`): crops and flips of 32x32 arrays, or
    RandomResizedCrop and flips of list-file images. resize/crop: see ArrayImages and
    file_transform; square resizes list-file images to resize x resize (HashNet's way).
    mean/std: the normalisation, per channel; None takes the data set table's (what MAH
    used), MMHH passes ImageNet's, which its released code used for every data set.
    crop_scale: the area range of list-file training crops (see file_transform).
    workers: list-file reading processes, started at the first pass and kept for the feeder's
    life; on a CUDA device the batches come through pinned memory.
    """

    def __init__(self, data, part, device, train, resize, crop, augment=False, workers=4, square=False, mean=None,
                 std=None, crop_scale=(0.08, 1.0)):
        self.part, self.device, self.train = getattr(data, part), torch.device(device), train
        info = data.info
        mean, std = info.mean if mean is None else mean, info.std if std is None else std
        if data.images is not None:
            stored = data.images.shape[1]
            self.arrays = ArrayImages(data.images, mean, std, device,
                                      resize=None if resize == stored == crop else resize, crop=crop,
                                      augment=augment)
        else:
            self.arrays = None
            transform = file_transform(resize, crop, train=train and augment, square=square, scale=crop_scale)
            self.files = FileImages(self.part.list, transform)
            self.normalise = Normalise(mean, std, self.device)
            self.workers = workers
            self.loader = None  # built at the first pass, from self.files

    def __len__(self):
        return len(self.part.labels)

    def batches(self, order, batch_size, generator=None, share=None):
        """(positions into `order`, B x 3 x S x S images of part items order[positions]).

        generator: a seeded CPU torch.Generator that every random transform draws from
        (for list files it seeds the items' crops), so batches can be re-derived.
        share: a slice of every batch (utils.distributed.shard): only those items are
        returned, and list-file images only of those are read; the random draws are the
        whole batch's, so every share sees what one process would."""
        share = slice(None) if share is None else share
        if self.arrays is not None:
            for start in range(0, len(order), batch_size):
                pos = torch.arange(start, min(start + batch_size, len(order)))
                rows = torch.as_tensor(self.part.index[order[start:start + batch_size]])
                yield pos[share], self.arrays.batch(rows, train=self.train, generator=generator)[share]
            return
        # one seed per pass, from the generator: item k's crop is drawn from seed + k, whatever the
        # number of workers (with none, torchvision would draw from the global generator)
        seed = None
        if generator is not None:
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
            # and the draw a DataLoader built per pass made: a generator serving several passes
            # (MAH's epochs) gives each the seed it gave before the loader was kept
            torch.empty((), dtype=torch.int64).random_(generator=generator)
        groups = [list(range(start, min(start + batch_size, len(order))))[share]
                  for start in range(0, len(order), batch_size)]
        loader = self._loader()
        loader.batch_sampler.groups = [[(int(order[k]), None if seed is None else seed + k) for k in group]
                                       for group in groups]
        for positions, (x, _) in zip(groups, loader):
            yield torch.tensor(positions), self.normalise(x)

    def _loader(self):
        """The feeder's one DataLoader: its workers stay between passes, the batches of each pass
        are its sampler's (set by batches); its own generator, so no pass draws from the global one."""
        if self.loader is None:
            self.loader = torch.utils.data.DataLoader(SeededItems(self.files), batch_sampler=_Batches(),
                                                      num_workers=self.workers, persistent_workers=self.workers > 0,
                                                      pin_memory=self.device.type == "cuda",
                                                      generator=torch.Generator())
        return self.loader
