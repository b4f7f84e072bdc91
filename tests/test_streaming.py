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
