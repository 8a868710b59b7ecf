"""The asymmetric pieces MAH takes from ADSH: soft similarity, the loss, and the discrete
cyclic coordinate descent (DCC) that learns the database codes V (spec MAH.md)."""
import torch
import torch.nn as nn

_CHUNK = 1 << 22  # similarity entries per chunk: S for NUS-WIDE (8000 x 190k) is never dense


def similarity(labels_a, labels_b):
    """S_ij = 1 if a_i and b_j share a label (l_a . l_b > 0); labels are one-hot/multi-hot float rows."""
    return (labels_a @ labels_b.T > 0).float()


def soft_ratio(sample_labels, db_labels):
    """r = sum(S) / sum(1 - S) of the m x n similarity, counted in chunks."""
    similar = 0
    step = max(1, _CHUNK // len(db_labels))
    for i in range(0, len(sample_labels), step):
        similar += int(similarity(sample_labels[i:i + step], db_labels).sum())
    total = len(sample_labels) * len(db_labels)
    return similar / max(total - similar, 1)


def soft(s, r):
    """Soft similarity: similar pairs 1, dissimilar -r."""
    return s * (1 + r) - r


class ADSHLoss(nn.Module):
    """L_c = [ sum_i sum_j (u_i.v_j - c S_ij)^2 + gamma sum_i ||v_idx(i) - u_i||^2 ] / (n B).

    ADSH (Jiang & Li, AAAI 2018) eq. 3 as its code computed it, per head with code length
    c; u: B x c network outputs, V: n x c database codes, S: B x n soft similarity rows of
    the batch, idx: database indices of the batch. Hyperparameter: gamma.
    """

    def __init__(self, gamma):
        super().__init__()
        self.gamma = gamma

    def forward(self, u, V, S, idx):
        n, c = V.shape
        pair = (u @ V.T - c * S).pow(2).sum()  # B x n residuals
        quant = (V[idx] - u).pow(2).sum()
        return (pair + self.gamma * quant) / (n * len(u))


def dcc_update(V, U, sample_index, sample_labels, db_labels, r, gamma, columns=None):
    """One DCC pass over the columns of V (n x c, updated in place; `columns` picks a subset,
    in that order); returns the count of exact zeros that became +1.

    Q = -2 c S^T U - 2 gamma Ubar with S the m x n soft similarity and Ubar the n x c
    matrix holding U at the sampled rows; then for k = 1..c in order
    V[:, k] = -sign(Q[:, k] + 2 V_{-k} U_{-k}^T U_k), using the columns updated before k.
    """
    n, c = V.shape
    Q = torch.zeros_like(V)  # n x c
    step = max(1, _CHUNK // len(sample_labels))
    for j in range(0, n, step):  # S^T U, one chunk of database rows at a time
        s = soft(similarity(db_labels[j:j + step], sample_labels), r)  # chunk x m
        Q[j:j + step] = -2 * c * (s @ U)
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


def dcc_objective(V, U, sample_index, S, gamma):
    """The V-subproblem objective DCC decreases: ||V U^T - c S^T||^2 + gamma ||V_sample - U||^2
    up to constants (S: m x n soft similarity, dense; for tests)."""
    c = V.shape[1]
    return (V @ U.T - c * S.T).pow(2).sum() + gamma * (V[sample_index] - U).pow(2).sum()
