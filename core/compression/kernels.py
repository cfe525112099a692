"""The numba kernel for product-quantisation lookup-table scoring (imported on first use)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def adc_scores(lut: np.ndarray, codes: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[q, i] = sum_j lut[q, j, codes[i, j]]`` (asymmetric distance computation).

    lut: float32 (m_queries, m_subspaces, 256); codes: uint8 (n, m_subspaces);
    out: float32 (m_queries, n). Single-threaded and ``nogil``, so it is safe to call from
    several threads at once (no numba threading layer involved). Four queries share each
    pass over the codes: four independent sums hide the latency of the additions.
    """
    n_queries, n_sub = lut.shape[0], lut.shape[1]
    n = codes.shape[0]
    q = 0
    while q + 4 <= n_queries:
        t0, t1, t2, t3 = lut[q], lut[q + 1], lut[q + 2], lut[q + 3]
        for i in range(n):
            row = codes[i]
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s2 = np.float32(0.0)
            s3 = np.float32(0.0)
            for j in range(n_sub):
                c = row[j]
                s0 += t0[j, c]
                s1 += t1[j, c]
                s2 += t2[j, c]
                s3 += t3[j, c]
            out[q, i] = s0
            out[q + 1, i] = s1
            out[q + 2, i] = s2
            out[q + 3, i] = s3
        q += 4
    while q < n_queries:
        table = lut[q]
        for i in range(n):
            row = codes[i]
            s = np.float32(0.0)
            for j in range(n_sub):
                s += table[j, row[j]]
            out[q, i] = s
        q += 1
