"""splitmix64 (Steele, Lea & Flood 2014) for numba kernels: one 64-bit state per thread, a
well-mixed 64-bit output per step. The SGD kernels (LargeVis, UMAP) draw their samples with it,
each thread from its own state, seeded by ``np.random.SeedSequence(seed).generate_state``."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["splitmix"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)


@njit(cache=True, nogil=True)
def splitmix(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    """The next state and its output."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return state, z ^ (z >> _S31)
