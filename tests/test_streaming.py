"""Large runs stream: bootstrap weights come in blocks that reproduce the whole matrix, so scoring
100k examples never holds (resamples x n) at once."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import kernel


@pytest.mark.parametrize("n,resamples,cells,n_blocks", [
    (7, 50, 21, 1), (3000, 40, 1 << 16, 2), (70_000, 5, 1 << 16, 5), (5, 0, 10, 0)])
def test_weight_blocks_are_the_rows_of_the_resampled_counts(n, resamples, cells, n_blocks):
    blocks = list(kernel.resample_weight_blocks(n, resamples, seed=3, cells=cells))
    assert len(blocks) == n_blocks and sum(len(b) for b in blocks) == resamples
    idx = kernel.resample_indices(n, resamples, seed=3)
    expected = np.stack([np.bincount(row, minlength=n) for row in idx]) if resamples else np.empty((0, n))
    got = np.concatenate(blocks) if blocks else np.empty((0, n))
    assert np.array_equal(got, expected)
    assert np.array_equal(kernel.resample_weights(n, resamples, seed=3), expected)


@pytest.mark.parametrize("b,c", [(1000, 1100), (1500, 1600), (2900, 3100), (1200, 1210), (3000, 3000), (5, 2500)])
def test_mcnemar_in_log_space_matches_the_integer_sum(b, c):
    import math

    n = b + c
    exact = min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n)
    assert n > kernel.EXACT_MCNEMAR_MAX
    assert kernel.mcnemar_exact(b, c) == pytest.approx(exact, rel=1e-9, abs=1e-300)
