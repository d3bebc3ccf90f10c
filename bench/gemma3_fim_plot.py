"""Plot the Gemma 3 FIM LoRA run's loss curve from its CSV (the trainer writes it).

    .venv/bin/python bench/gemma3_fim_plot.py [--csv docs/figures/gemma3_fim_loss.csv]
                                              [--out docs/figures/gemma3_fim_loss.png]

Train loss per step (thin) and its moving average over 10 steps, held-out loss at each eval
(the untrained start at 0 tokens), both per loss token (the middle and its <eos>), against
tokens trained.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=ROOT / "docs/figures/gemma3_fim_loss.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/figures/gemma3_fim_loss.png")
    ap.add_argument("--window", type=int, default=10)
    a = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(a.csv)))
    tr = [(int(r["trained_tokens"]), float(r["loss"])) for r in rows if r["loss"]]
    ev = [(int(r["trained_tokens"]), float(r["eval_loss"])) for r in rows if r["eval_loss"]]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if tr:
        x, y = zip(*tr)
        ax.plot([v / 1e3 for v in x], y, lw=0.6, alpha=0.4, color="tab:blue",
                label="train loss (per step)")
        w = a.window
        ma = [sum(y[max(0, i - w + 1):i + 1]) / len(y[max(0, i - w + 1):i + 1])
              for i in range(len(y))]
        ax.plot([v / 1e3 for v in x], ma, lw=1.6, color="tab:blue",
                label=f"train loss ({w}-step mean)")
    if ev:
        x, y = zip(*ev)
        ax.plot([v / 1e3 for v in x], y, "o-", color="tab:red", lw=1.6,
                label="held-out loss (16 rows)")
    ax.set_xlabel("tokens trained (thousands)")
    ax.set_ylabel("cross-entropy per middle token (nats)")
    ax.set_title("Gemma 3 270M + LoRA r8 (q/k/v/o), gemma3-fim layout, CPU")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out)
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
