"""Binary (XNOR / popcount) matrix product on packed rows, run as a 1x1 binary conv."""
from __future__ import annotations

import numpy as np

from lowbit.kernels.binary.common import check_packed, n_words
from lowbit.kernels.binary.conv import binary_conv
from lowbit.kernels.binary.tile import LANES


def binary_gemm(a_packed, w_packed, *, k):
    """Binary matrix product ``A @ W.T`` of +-1 rows stored as packed signs.

    ``Y[n, m] = K - 2 * sum_w popcount(A[n, w] ^ W[m, w])`` = sum over the K
    channels of ``sign(a) * sign(w)``.  Multiply by the per-channel scale
    (alpha) outside.

    Parameters
    ----------
    a_packed : ndarray
        uint64 (N, ceil(K / 64)) from :func:`~lowbit.kernels.binary.pack_signs_2d`.
    w_packed : ndarray
        uint64 (M, ceil(K / 64)) from :func:`~lowbit.kernels.binary.pack_weights`.
    k : int
        K, the length of the +-1 vectors.

    Returns
    -------
    ndarray
        int32 (N, M).
    """
    a = check_packed("a_packed", a_packed, 2)
    w = check_packed("w_packed", w_packed, 2)
    k = int(k)
    words = n_words(k)
    if k < 1 or a.shape[1] != words or w.shape[1] != words:
        raise ValueError(f"k={k} needs {words} words per row; a_packed has shape {a.shape}, "
                         f"w_packed {w.shape}")
    n_rows, m_out = a.shape[0], w.shape[0]
    if n_rows == 0 or m_out == 0:
        return np.zeros((n_rows, m_out), dtype=np.int32)
    # Rows become the positions of 1-row images LANES wide, so a conv tile covers LANES rows
    # and the parallel tasks are groups of rows.
    groups = -(-n_rows // LANES)
    x = np.zeros((groups * LANES, words), dtype=np.uint64)
    x[:n_rows] = a
    y = binary_conv(x.reshape(groups, 1, LANES, words), w.reshape(m_out, 1, 1, words), channels=k,
                    kernel_shape=(1, 1))  # (groups, M, 1, LANES)
    return np.ascontiguousarray(y[:, :, 0, :].transpose(0, 2, 1).reshape(-1, m_out)[:n_rows])
