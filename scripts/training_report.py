"""Write the reference model's training curve and figures to benchmarks/results/training.{md,png}.

    python scripts/training_report.py runs/cifar_resnet20/history.json

Reads the per-epoch history that ``scripts/train_cifar.py`` writes (train loss/accuracy and the
test accuracy measured after each epoch for the curve; the shipped checkpoint is the last
epoch, not one chosen on test accuracy).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("history", type=Path)
    ap.add_argument("--epochs", type=int, default=30, help="length of the planned schedule")
    args = ap.parse_args()
    hist = json.loads(args.history.read_text())
    OUT.mkdir(parents=True, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in hist]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(ep, [h["train_acc"] for h in hist], label="train top-1 (augmented, running)")
    ax.plot(ep, [h["test_acc"] for h in hist], label="test top-1 (10,000 images)")
    ax.axhline(90, color="grey", ls=":", label="90% target")
    ax.set(xlabel="epoch", ylabel="top-1 accuracy (%)", ylim=(30, 100),
           title=f"cifar_resnet20 on CIFAR-10 (JPEG copy), {len(hist)}/{args.epochs} epochs")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "training.png")

    last = hist[-1]
    minutes = sum(h["seconds"] for h in hist) / 60
    rows = "\n".join(
        f"| {h['epoch']} | {h['train_loss']:.3f} | {h['train_acc']:.2f} | {h['test_acc']:.2f} |"
        for h in hist if h["epoch"] % 10 == 0 or h is last
    )
    cpu = _cpu_model()
    title = "# Reference model training: cifar_resnet20 (option A) on CIFAR-10"
    (OUT / "training.md").write_text(f"""{title}

Command: `python scripts/train_cifar.py --data ../shared/datasets/cifar10 --out runs/r20
--epochs {args.epochs}` (seed 0; resumable with `--resume`).

Recipe: SGD lr 0.1, momentum 0.9, nesterov, weight decay 5e-4 (not on BN/bias), batch 128,
one-epoch linear warm-up then cosine to 0 over {args.epochs} epochs; random 32x32 crop of the
4-pixel zero-padded image + horizontal flip; fp32, channels_last, 2 threads.

Result after epoch {last['epoch']} of {args.epochs}: **test top-1 {last['test_acc']:.2f}%**
(10,000 test images of the JPEG-recompressed copy), train top-1 {last['train_acc']:.2f}%
(running average over the augmented epoch), {minutes:.0f} minutes of training on {cpu}.
The shipped checkpoint is the last epoch; test accuracy was logged for this curve only,
never used to pick a checkpoint or a setting.

![curve](training.png)

| epoch | train loss | train top-1 % | test top-1 % |
| ---: | ---: | ---: | ---: |
{rows}
""")


def _cpu_model() -> str:
    """``AMD EPYC (2 cores, AVX2)``-style description of the training host."""
    import os

    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


if __name__ == "__main__":
    main()
