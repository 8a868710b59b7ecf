"""The asymmetric pieces MAH takes from ADSH: soft similarity, the loss, and the discrete
cyclic coordinate descent (DCC) that learns the database codes V (docs/MAH.md).

S (m sampled items x n database items) is never formed: the loss and DCC need only
products S X with thin matrices X, computed from the labels in chunks, or, when every
item has exactly one label, as (L_a L_b^T) X = L_a (L_b^T X) with no m x n work at all.
"""
import torch
import torch.nn as nn

from utils.data.labels import similarity

_CHUNK = 1 << 22  # similarity entries per chunk: S for NUS-WIDE (8000 x 190k) is never dense


def similar_times(labels_a, labels_b, x, single_label):
    """similarity(labels_a, labels_b) @ x, without the len(a) x len(b) matrix when single-label."""
    if single_label:  # one-hot rows: l_a . l_b is already 0 or 1
        return labels_a @ (labels_b.T @ x)
    step = max(1, _CHUNK // len(labels_b))
    return torch.cat([similarity(labels_a[i:i + step], labels_b) @ x for i in range(0, len(labels_a), step)])


def soft_ratio(sample_labels, db_labels, single_label):
    """r = sum(S) / sum(1 - S) of the m x n binary similarity."""
    ones = torch.ones(len(db_labels), 1, device=db_labels.device)
    similar = float(similar_times(sample_labels, db_labels, ones, single_label).sum())
    total = len(sample_labels) * len(db_labels)
    return similar / max(total - similar, 1)


def soft_times(labels_a, labels_b, x, r, single_label):
    """The soft similarity of a and b (similar pairs 1, dissimilar -r) times x, without the
    a x b matrix: (1 + r) S x - r 1 (1^T x), S the binary similarity."""
    return (1 + r) * similar_times(labels_a, labels_b, x, single_label) - r * x.sum(0, keepdim=True)


def stack_codes(V):
    """[V_0 ... V_k 1] (n x (sum c_k + 1)) and its column sums: one product of a block of
    similarity rows with it gives every head's S V and the similar-pair count (soft_products)."""
    stacked = torch.cat([*V, torch.ones(len(V[0]), 1, device=V[0].device)], 1)
    return stacked, stacked.sum(0)


def soft_products(row_labels, db_labels, stacked, column_sums, r, lengths, single_label):
    """Every head's S V (B x c_k each) and sum_ij S_ij^2 of the soft similarity (1 similar,
    -r otherwise) of `row_labels` (B x C) to the database, from stack_codes' output; S2 is a
    0-dim float64 tensor on the device."""
    products = similar_times(row_labels, db_labels, stacked, single_label)  # B x (sum c + 1)
    similar = products[:, -1].sum().double()  # a tensor: a batch's loss reads nothing back from the device
    S2 = similar + (len(row_labels) * len(db_labels) - similar) * r * r
    SV = ((1 + r) * products[:, :-1] - r * column_sums[:-1]).split(lengths, 1)
    return SV, S2


class ADSHLoss(nn.Module):
    """L_c = [ sum_i sum_j (u_i.v_j - c S_ij)^2 + gamma sum_i ||v_idx(i) - u_i||^2 ] / (n B).

    ADSH (Jiang & Li, AAAI 2018) eq. 3 as its code computed it, per head with code length
    c; u: B x c network outputs, V: n x c database codes, idx: database indices of the
    batch; hyperparameter gamma. The pair sum is expanded so that nothing B x n is
    differentiated: sum_ij (u_i.v_j)^2 = sum_i u_i^T (V^T V) u_i, the cross term needs
    S V (B x c), and sum_ij S_ij^2 is a constant; the caller passes gram = V^T V,
    SV = S V and S2 = sum_ij S_ij^2 (all constants of the outer iteration or batch).
    """

    def __init__(self, gamma):
        super().__init__()
        self.gamma = gamma

    def forward(self, u, V, idx, gram, SV, S2):
        n, c = V.shape
        pair = ((u @ gram) * u).sum() - 2 * c * (u * SV).sum() + torch.as_tensor(c * c * S2, dtype=u.dtype)
        quant = (V[idx] - u).pow(2).sum()
        return (pair + self.gamma * quant) / (n * len(u))


def dcc_update(V, U, sample_index, sample_labels, db_labels, r, gamma, single_label, columns=None):
    """One DCC pass over the columns of V (n x c, updated in place; `columns` picks a subset,
    in that order); returns the count of exact zeros that became +1.

    Q = -2 c S^T U - 2 gamma Ubar with S the m x n soft similarity and Ubar the n x c
    matrix holding U at the sampled rows; then for k = 1..c in order
    V[:, k] = -sign(Q[:, k] + 2 V_{-k} U_{-k}^T U_k), using the columns updated before k.
    """
    c = V.shape[1]
    Q = -2 * c * soft_times(db_labels, sample_labels, U, r, single_label)  # n x c
    Q[sample_index] -= 2 * gamma * U
    gram = U.T @ U  # c x c
    zeros = 0
    for k in range(c) if columns is None else columns:
        # V_{-k} U_{-k}^T U_k = V gram[:, k] - V[:, k] gram[k, k]
        value = Q[:, k] + 2 * (V @ gram[:, k] - V[:, k] * gram[k, k])
        column = -torch.sign(value)
        zero = column == 0
        zeros += int(zero.sum())
        V[:, k] = column.masked_fill(zero, 1.0)  # the original left sign(0) = 0
    return zeros


def adsh_objective(V, U, sample_index, SV, S2, gamma):
    """The ADSH objective of one head after a V step, as the original's calc_loss logged it:
    [ ||U V^T - c S||^2 + gamma ||V_sample - U||^2 ] / (m n), S the m x n soft similarity.

    Expanded so that nothing m x n is formed: ||U V^T||^2 = <U^T U, V^T V>, the cross term
    is <U, S V>; the caller passes SV = S V (m x c) and S2 = sum_ij S_ij^2, as for ADSHLoss."""
    (n, c), m = V.shape, len(U)
    U, V, SV = U.double(), V.double(), SV.double()  # the terms are ~c^2 m n and cancel: float32 would lose them
    pair = float(((U.T @ U) * (V.T @ V)).sum() - 2 * c * (U * SV).sum()) + c * c * float(S2)
    quant = float((V[sample_index] - U).pow(2).sum())
    return (pair + gamma * quant) / (m * n)


def class_codes(C, c, seed, candidates=64):
    """A code per class (C x c): drawn from `seed`, distinct when 2^c >= C, and of `candidates`
    draws the one whose codes are closest to pairwise orthogonal (least sum of squared inner
    products), so that no two classes start adjacent when it can be helped."""
    rng = torch.Generator().manual_seed(seed)
    best, best_cost = None, float("inf")
    for _ in range(candidates):
        if c < 20 and 2 ** c >= C:  # distinct codes: C of the 2^c corners without replacement
            ids = torch.randperm(2 ** c, generator=rng)[:C]
            B = ((ids[:, None] >> torch.arange(c)) & 1).float() * 2 - 1  # C x c
        else:
            B = torch.randint(0, 2, (C, c), generator=rng).float() * 2 - 1
        gram = B @ B.T  # C x C
        cost = float(gram.pow(2).sum() - gram.diagonal().pow(2).sum())
        if cost < best_cost:
            best, best_cost = B, cost
    return best


def nested_class_codes(C, lengths, seed):
    """Class codes for several lengths, each longer code the next shorter one plus new bits
    (list of C x c, in the order of `lengths`): the short code is then a plain selection of
    the long one, which a cascade's long-to-short chain can represent exactly."""
    books, prefix = [None] * len(lengths), torch.empty(C, 0)
    for k in sorted(range(len(lengths)), key=lambda k: lengths[k]):
        extra = lengths[k] - prefix.shape[1]
        prefix = torch.cat([prefix, class_codes(C, extra, seed + k)], 1) if extra else prefix
        books[k] = prefix
    return books


def label_codes(labels, B):
    """Initial database codes from the labels and class codes B (C x c): V = sign(L B), exact
    zeros +1 (n x c). Multi-hot rows get the sign of the sum of their classes' codes."""
    V = labels @ B.to(labels.device)  # n x c
    return torch.where(V >= 0, 1.0, -1.0)
