"""What warm starts save when λ_max is tracked during training.

Trains the digits MLP 64-64-64-10 by full-batch gradient descent and measures λ_max (relative
residual tolerance 1e-4) after every epoch twice: warm-started from the previous checkpoint's
top eigenvector, and cold from a random vector. Prints the products and seconds of both.

Run: ``.venv/bin/python -m benchmarks.tracking [--epochs 30] [--lr 0.1]``.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from benchmarks.precision import digits_mlp
from hesslens.training.tracker import Tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    model, (x, y) = digits_mlp()
    warm = Tracker(nn.CrossEntropyLoss(), (x, y), tol=1e-4, lr=args.lr)
    cold = Tracker(nn.CrossEntropyLoss(), (x, y), tol=1e-4, lr=args.lr, warm_start=False)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    for epoch in range(args.epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        warm.step(model, epoch=epoch)
        cold.step(model, epoch=epoch)
    w, c = warm.history, cold.history
    print(f"λ_max tracked over {args.epochs} epochs of GD (lr {args.lr}), tol 1e-4, digits MLP 64-64-64-10\n")
    print("| start | products (sum) | products per checkpoint (median) | λ_max seconds (sum) | final λ_max |")
    print("|---|---|---|---|---|")
    for name, h in (("cold", c), ("warm", w)):
        solve_s = h["seconds"].sum()
        print(f"| {name} | {h['lambda_max_matvecs'].sum()} | {h['lambda_max_matvecs'].median():.0f} | {solve_s:.2f} | "
              f"{h['lambda_max'].iloc[-1]:.6g} |")
    saved = 1 - w["lambda_max_matvecs"].sum() / c["lambda_max_matvecs"].sum()
    print(f"\nwarm starts save {saved:.0%} of the products")


if __name__ == "__main__":
    main()
