"""Batches of one part of a data set (query, database or train) as device tensors, for
both kinds of data set: in-memory arrays and list files (utils.data.images)."""
import torch

from utils.data.images import ArrayImages, FileImages, SeededItems, file_transform


class Feeder:
    """Images of `part` in a given order, in batches, normalised and on `device`.

    train: apply the augmentation (when `augment`): crops and flips of 32x32 arrays, or
    RandomResizedCrop and flips of list-file images. resize/crop: see ArrayImages and
    file_transform; square resizes list-file images to resize x resize (HashNet's way).
    mean/std: the normalisation, per channel; None takes the data set table's (what MAH
    used), MMHH passes ImageNet's, which its released code used for every data set.
    crop_scale: the area range of list-file training crops (see file_transform).
    """

    def __init__(self, data, part, device, train, resize, crop, augment=False, workers=4, square=False, mean=None,
                 std=None, crop_scale=(0.08, 1.0)):
        self.part, self.device, self.train = getattr(data, part), device, train
        info = data.info
        mean, std = info.mean if mean is None else mean, info.std if std is None else std
        if data.images is not None:
            stored = data.images.shape[1]
            self.arrays = ArrayImages(data.images, mean, std, device,
                                      resize=None if resize == stored == crop else resize, crop=crop,
                                      augment=augment)
        else:
            self.arrays = None
            transform = file_transform(mean, std, resize, crop, train=train and augment, square=square,
                                       scale=crop_scale)
            self.files = FileImages(self.part.list, transform)
            self.workers = workers

    def __len__(self):
        return len(self.part.labels)

    def batches(self, order, batch_size, generator=None, share=None):
        """(positions into `order`, B x 3 x S x S images of part items order[positions]).

        generator: a seeded CPU torch.Generator that every random transform draws from
        (for list files it seeds the DataLoader workers), so batches can be re-derived.
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
        seed = None if generator is None else int(torch.randint(0, 2 ** 62, (1,), generator=generator))
        subset = SeededItems(self.files, [int(i) for i in order], seed)
        groups = [list(range(start, min(start + batch_size, len(order))))[share]
                  for start in range(0, len(order), batch_size)]
        loader = torch.utils.data.DataLoader(subset, batch_sampler=groups, num_workers=self.workers,
                                             generator=generator)
        for positions, (x, _) in zip(groups, loader):
            yield torch.tensor(positions), x.to(self.device, non_blocking=True)
