"""Serve the digits classifier that train.py trained: `cumulo serve service.py:Digits`.

Loads the newest `epoch-*.pt` checkpoint from $DIGITS_CHECKPOINTS; as a cumulo deployment
(`cumulo deploy deployment.yaml`), from the artifacts of the job named $DIGITS_JOB (default
"digits"), asked of the control plane; otherwise from ./artifacts/checkpoints, where
`python train.py` writes them.

    curl -s localhost:8000/predict -H 'content-type: application/json' \
         -d '{"pixels": [0,0,5,13,9,1,0,0, ...64 values in 0..16...]}'
    {"digit": 0, "probabilities": [0.98, ...]}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import torch
from pydantic import BaseModel, Field

import cumulo
import train  # this folder's train.py: build_model() and newest_checkpoint()
from cumulo.serving import Service, handler

Pixel = Annotated[float, Field(ge=0, le=16)]


class Prediction(BaseModel):
    digit: int = Field(description="the most likely digit, 0-9")
    probabilities: list[float] = Field(description="probability of each digit 0-9")


class Digits(Service):
    """Classify 8x8 images of handwritten digits (scikit-learn's digits dataset)."""

    def setup(self) -> None:
        folder = Path(os.environ.get("DIGITS_CHECKPOINTS") or self._job_checkpoints() or "artifacts/checkpoints")
        checkpoint = train.newest_checkpoint(folder)
        if checkpoint is None:
            raise FileNotFoundError(
                f"no epoch-*.pt checkpoint in {folder.resolve()}: train first "
                "(python train.py --epochs 5) or point DIGITS_CHECKPOINTS at the job's checkpoints"
            )
        state = torch.load(checkpoint, weights_only=True)
        torch.set_num_threads(1)
        self.model = train.build_model()
        self.model.load_state_dict(state["model"])
        self.model.eval()
        self.checkpoint = checkpoint.name
        print(f"loaded {checkpoint} (test accuracy {state['accuracy']:.3f})", flush=True)

    @staticmethod
    def _job_checkpoints() -> str | None:
        """Inside a deployment: the checkpoints of the training job, from the control plane."""
        if not os.environ.get("CUMULO_DEPLOYMENT"):
            return None
        with cumulo.Client() as client:
            return str(Path(client.get_job(os.environ.get("DIGITS_JOB", "digits")).artifacts) / "checkpoints")

    @handler
    def predict(self, pixels: Annotated[list[Pixel], Field(min_length=64, max_length=64)]) -> Prediction:
        """The digit in an 8x8 image given row by row as 64 values in 0..16 (as in load_digits())."""
        x = torch.tensor(pixels, dtype=torch.float32).reshape(1, 64) / 16.0  # as train.load_data()
        with torch.inference_mode():
            probs = torch.softmax(self.model(x), dim=1)[0]
        return Prediction(digit=int(probs.argmax()), probabilities=[round(float(p), 6) for p in probs])
