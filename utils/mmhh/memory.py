"""MMHH's semi-batch memory (BatchInitMem, docs/MMHH.md): one output row per training image,
so that after a warm-up each batch is compared with the whole training set (B x N pairs)
instead of with itself (B x B)."""
import math

import torch
import torch.nn.functional as F


def memory_momentum(t, warmup, beta0, total):
    """beta_t of the update m <- beta_t m + (1 - beta_t) h: 0 during the warm-up (rows are
    overwritten), then beta0 + (1 - beta0) sqrt(t / total), rising to 1 at the end."""
    if t < warmup:
        return 0.0
    return beta0 + (1 - beta0) * math.sqrt(t / total)


class Memory:
    """N x K outputs and N x C labels of the training set."""

    def __init__(self, codes, labels, warmup, beta0, total, normalize):
        self.codes, self.labels = codes, labels  # N x K, N x C
        self.warmup, self.beta0, self.total, self.normalize = warmup, beta0, total, normalize
        if normalize:
            self.codes = F.normalize(self.codes, dim=1)

    def operand(self, t, h, labels):
        """The second operand (H2, L2) of the pair loss at iteration t: the batch during the
        warm-up, the memory after it (a constant: gradients flow through the batch only)."""
        return (h, labels) if t < self.warmup else (self.codes, self.labels)

    @torch.no_grad()
    def update(self, t, index, h):
        """After the optimizer step of iteration t: move the batch's rows towards its outputs h."""
        beta = memory_momentum(t, self.warmup, self.beta0, self.total)
        rows = beta * self.codes[index] + (1 - beta) * h.detach()
        self.codes[index] = F.normalize(rows, dim=1) if self.normalize else rows
