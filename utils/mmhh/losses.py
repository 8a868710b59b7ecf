"""The pair losses of MMHH (Kang et al., ICCV 2019), as its released code computed them
(docs/MMHH.md), and the losses it is compared with: MMHH without its margin reweighting
(MMHH0), DCH's Cauchy cross-entropy and quantization (Cao et al., CVPR 2018) and HashNet's
pairwise loss.

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
    "auto" = dissimilar / similar pairs of this pair matrix (1 when it has no similar pair), as a
    float64 0-dim tensor on S's device: a Python number would make every step wait for the device."""
    if spec == "config":
        return float(configured)
    if spec == "auto":
        similar = S.sum(dtype=torch.float64)
        return torch.where(similar > 0, (S.numel() - similar) / similar, 1.0)
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
    margins None: no reweighting (MMHH0, the ablation without the margin).
    """
    d = hamming_estimate(H1, H2)
    W = (1 - S) + S * w_s
    if margins is not None:
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


# Added to DCH's distances: a dissimilar pair at distance 0 (an item without labels paired with
# itself) pays log(1 + gamma / d), which must stay finite
DCH_EPS = 1e-6


def squared_distance(H1, H2):
    """||h_i - h_j||^2 (B x N), clamped at 0 against rounding."""
    return ((H1 * H1).sum(1, keepdim=True) + (H2 * H2).sum(1) - 2 * H1 @ H2.T).clamp_min(0)


def dch_distance(H1, H2, euclidean):
    """DCH's distance (B x N): the paper's normalised Hamming distance K/2 (1 - cos), or the released
    code's squared Euclidean distance of the raw outputs (euclidean)."""
    d = squared_distance(H1, H2) if euclidean else hamming_estimate(H1, H2).clamp_min(0)
    return d + DCH_EPS


def dch_weights(spec, S, configured, euclidean):
    """(similar, dissimilar) pair weights of DCH. Under "auto" the paper's |S| / |S1| and |S| / |S0|
    (S1, S0: the similar and dissimilar pairs of this pair matrix; 1 for a kind with no pair), the
    ratio `auto` gives the other losses; with the released code's form (euclidean) its |S| / |S1|
    and 1. Otherwise similar_weight's number and 1. Under "auto" they are float64 0-dim tensors on
    S's device (see similar_weight)."""
    if spec != "auto":
        return similar_weight(spec, S, configured), 1.0
    total, similar = S.numel(), S.sum(dtype=torch.float64)
    w_s = torch.where(similar > 0, total / similar, 1.0)
    w_d = 1.0 if euclidean else torch.where(similar < total, total / (total - similar), 1.0)
    return w_s, w_d


def dch_loss(H1, H2, S, gamma, w_s, w_d, euclidean=False):
    """DCH's weighted Cauchy cross-entropy, mean over the pairs: p = gamma / (gamma + d) is the
    probability of similarity; similar pairs pay -log p = log(1 + d / gamma), dissimilar
    -log(1 - p) = log(1 + gamma / d), weighted w_s and w_d."""
    d = dch_distance(H1, H2, euclidean)
    W = S * w_s + (1 - S) * w_d
    return (W * (S * torch.log1p(d / gamma) + (1 - S) * torch.log1p(gamma / d))).mean()


def dch_quantization(H, gamma, euclidean=False):
    """DCH's Cauchy quantization, mean over the rows: log(1 + d(|h_i|, 1) / gamma), d the pair
    loss's distance from |h_i| to the all-ones vector (the paper sums over the rows)."""
    d = dch_distance(H.abs(), torch.ones_like(H[:1]), euclidean)[:, 0]  # B
    return torch.log1p(d / gamma).mean()


# The losses that are means over the pairs (HashNet's is normalised by the pairs' total weight)
MEAN_LOSSES = ("MMHH", "MMHH0", "DCH")


def pair_loss(args, H1, H2, S, S_all, margins, configured):
    """(pair loss of --distance_type on this share's pairs S, this share's part of the whole pair
    matrix's normaliser, the similar pairs' weight). The weights come from S_all, the whole
    batch's pair matrix (under torchrun S holds one process's rows)."""
    kind = args.distance_type
    if kind == "DCH":
        euclidean = args.dch_distance == "euclidean"
        w_s, w_d = dch_weights(args.similar_weight_type, S_all, configured, euclidean)
        return dch_loss(H1, H2, S, args.gamma, w_s, w_d, euclidean), S.numel() / S_all.numel(), w_s
    w_s = similar_weight(args.similar_weight_type, S_all, configured)
    if kind in MEAN_LOSSES:
        loss = mmhh_loss(H1, H2, S, args.gamma, margins if kind == "MMHH" else None, w_s)
        return loss, S.numel() / S_all.numel(), w_s
    similar, similar_all = S.sum(dtype=torch.float64), S_all.sum(dtype=torch.float64)  # on the device: no wait
    share = ((w_s * similar + (S.numel() - similar)) / (w_s * similar_all + (S_all.numel() - similar_all))).float()
    return hashnet_loss(H1, H2, S, args.sigmoid_param, w_s), share, w_s


def quantization(args, H):
    """The quantization loss of --distance_type: DCH's own, DHN's for the others."""
    if args.distance_type == "DCH":
        return dch_quantization(H, args.gamma, args.dch_distance == "euclidean")
    return quantization_loss(H)
