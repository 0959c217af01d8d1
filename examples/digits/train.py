"""Train a small PyTorch network on scikit-learn's bundled digits (8x8 images, 10 classes).

Run through cumulo (`cumulo job submit job.yaml`), it:
- checkpoints every epoch into $CUMULO_ARTIFACTS/checkpoints (atomically: a crash never leaves a
  torn file), and resumes from the newest checkpoint when it is restarted (a retry, a new attempt);
- reports loss and accuracy with cumulo.report() (a no-op outside cumulo);
- trains data-parallel over `workers:` processes with torch.distributed (gloo) when WORLD_SIZE > 1.

Run it alone: `python train.py --epochs 5` (checkpoints go to ./artifacts).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import cumulo


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))


def load_data(seed: int = 0):
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    return x_tr, x_te, y_tr, y_te


def newest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    return found[-1] if found else None


def save_checkpoint(folder: Path, epoch: int, model: nn.Module, opt: torch.optim.Optimizer, accuracy: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch-{epoch}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(), "accuracy": accuracy}, tmp)
    os.replace(tmp, path)
    return path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--fail-at-epoch", type=int, default=0, help="exit 1 after this epoch on attempt 1 (to show resume)")
    args = p.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    torch.set_num_threads(1)

    ckpt_dir = Path(os.environ.get("CUMULO_ARTIFACTS", "artifacts")) / "checkpoints"
    x_tr, x_te, y_tr, y_te = load_data()
    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = 1
    latest = newest_checkpoint(ckpt_dir)
    if latest is not None:
        state = torch.load(latest, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = state["epoch"] + 1
        print(f"resuming from {latest.name} (accuracy {state['accuracy']:.3f})", flush=True)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    loss_fn = nn.CrossEntropyLoss()

    shard = torch.arange(rank, len(x_tr), world)  # each rank trains on its own slice
    for epoch in range(start, args.epochs + 1):
        model.train()
        gen = torch.Generator().manual_seed(epoch)
        order = shard[torch.randperm(len(shard), generator=gen)]
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_te).argmax(1) == y_te).float().mean().item()
        train_loss = total / len(order)
        if rank == 0:
            net = model.module if world > 1 else model
            save_checkpoint(ckpt_dir, epoch, net, opt, accuracy)
            cumulo.report(step=epoch, loss=train_loss, accuracy=accuracy, total_steps=args.epochs)
            print(f"epoch {epoch:3d}  loss {train_loss:.4f}  test accuracy {accuracy:.4f}", flush=True)
        if args.fail_at_epoch and epoch == args.fail_at_epoch and os.environ.get("CUMULO_ATTEMPT", "1") == "1":
            print(f"failing on purpose after epoch {epoch} (attempt 1)", flush=True)
            raise SystemExit(1)
    if world > 1:
        # every rank reaches the end before any tears down: gloo aborts a rank (SIGABRT) whose peer
        # closed the connection while it was still checkpointing
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
