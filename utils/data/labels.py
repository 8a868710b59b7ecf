"""Labels as matrices, the pair similarity they define, and the names of a part's items.

Labels are class ids (n,) for single-label data sets or n x C multi-hot rows; two items
are similar when they share a label.
"""
import os

import torch

from utils.cache import unpacked


def label_matrix(labels, classes, device):
    """Class ids or multi-hot rows -> n x C float multi-hot on `device`."""
    labels = torch.as_tensor(labels, device=device)
    if labels.dim() == 1:
        return torch.nn.functional.one_hot(labels, classes).float()
    return labels.float()


def similarity(labels_a, labels_b):
    """S_ij = 1 if a_i and b_j share a label (l_a . l_b > 0); labels are one-hot/multi-hot float rows."""
    return (labels_a @ labels_b.T > 0).float()


def item_names(data, part, data_root):
    """Names of the items of `part` ("query" or "database"), in the part's order: ints (rows
    of the canonical CIFAR-10 / digits array) or image paths relative to `data_root`."""
    p = getattr(data, part)
    if p.index is not None:
        return [int(i) for i in p.index]
    root = os.path.realpath(unpacked(data_root))  # a .tar's images are read from its unpacked copy
    return [os.path.relpath(os.path.realpath(path), root) for path in p.list.paths]
