"""The pair losses of MMHH (Kang et al., ICCV 2019), as its released code computed them
(docs/MMHH.md), and the HashNet pairwise loss it is compared with.

H1 (B x K) are batch outputs; H2 (N x K) is H1 itself or the memory bank, and S (B x N)
their 0/1 similarity (utils.data.labels.similarity: 1 when they share a label). Every loss is
a mean over the B x N pair matrix, so the memory bank changes how many pairs there are,
not the scale of the loss.
"""
import math

import torch
import torch.nn.functional as F

MARGIN_KEYS = ("sim_in", "dis_in", "sim_out", "dis_out", "margin")


def parse_margin_params(text):
    """'sim_in:dis_in:sim_out:dis_out:margin' -> dict of five floats."""
    try:
        values = [float(t) for t in str(text).split(":")]
    except ValueError:
        values = []
    if len(values) != 5:
        raise ValueError(f"--margin_params must be five numbers sim_in:dis_in:sim_out:dis_out:margin, got {text!r}")
    return dict(zip(MARGIN_KEYS, values))


def similar_weight(spec, S, configured):
    """The weight w_s of similar pairs: a number, "config" (the dataset table's value), or
    "auto" = dissimilar / similar pairs of this pair matrix (1 when it has no similar pair)."""
    if spec == "config":
        return float(configured)
    if spec == "auto":
        similar = float(S.sum())
        return (S.numel() - similar) / similar if similar else 1.0
    return float(spec)


def hamming_estimate(H1, H2):
    """d_ij = K/2 (1 - cos(h_i, h_j)) (B x N): the Hamming distance of the signs when the
    outputs are +-1. All-zero rows have cosine 0 with everything (d = K/2), never NaN."""
    K = H1.shape[1]
    cos = F.normalize(H1, dim=1, eps=1e-12) @ F.normalize(H2, dim=1, eps=1e-12).T
    return K / 2 * (1 - cos)


def mmhh_loss(H1, H2, S, gamma, margins, w_s):
    """Margin-reweighted Cauchy pair loss, mean over the pairs.

    p = gamma / 2 / (d + gamma) is the probability of similarity; similar pairs pay
    -log p, dissimilar -log(1 - p). Pairs already on the right side of the margin
    (similar within it, dissimilar beyond it) are down-weighted by sim_in / dis_out,
    the others by dis_in / sim_out; the masks use the detached distance, as the
    released code did (the paper writes the margin into the loss instead).
    """
    d = hamming_estimate(H1, H2)
    W = (1 - S) + S * w_s
    inside = d.detach() <= margins["margin"]
    W = W * torch.where(inside, S * margins["sim_in"] + (1 - S) * margins["dis_in"],
                        S * margins["sim_out"] + (1 - S) * margins["dis_out"])
    similar = math.log(2) + torch.log1p(d / gamma)  # -log p
    dissimilar = torch.log(d + gamma) - torch.log(d + gamma / 2)  # -log(1 - p)
    return (W * (S * similar + (1 - S) * dissimilar)).mean()


def hashnet_loss(H1, H2, S, sigmoid_param, w_s):
    """HashNet's weighted pairwise cross-entropy on x = sigmoid_param <h_i, h_j>:
    log(1 + e^x) - S x, similar pairs weighted w_s, normalised by the total weight."""
    x = sigmoid_param * (H1 @ H2.T)
    pair = F.softplus(x) - S * x  # softplus is log(1 + e^x) without overflow
    similar = S.sum()
    return (w_s * (S * pair).sum() + ((1 - S) * pair).sum()) / (w_s * similar + (S.numel() - similar))


def quantization_loss(H):
    """DHN's (1/B) sum_ik log cosh(|h_ik| - 1), written as |x| + log(1 + e^-2|x|) - log 2
    so that it cannot overflow."""
    x = (H.abs() - 1).abs()
    return (x + F.softplus(-2 * x) - math.log(2)).sum() / len(H)
