"""Write the reference model's training curve and figures to benchmarks/results/training.{md,png}.

    python scripts/training_report.py runs/r20-s2/last.pt

Reads the training checkpoint that ``scripts/train_cifar.py`` writes: the per-epoch history
of every stage (train loss/accuracy and the test accuracy measured after each epoch for the
curve; the shipped checkpoint is the last epoch, not one chosen on test accuracy) and the
command of each stage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="runs/<name>/last.pt")
    args = ap.parse_args()
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_cifar import stages_of

    ck = torch.load(args.checkpoint, weights_only=True)
    hist, stages = json.loads(ck["history"]), stages_of(ck)
    OUT.mkdir(parents=True, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in hist]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(ep, [h["train_acc"] for h in hist], label="train top-1 (augmented, running)")
    ax.plot(ep, [h["test_acc"] for h in hist], label="test top-1 (10,000 images)")
    ax.axhline(90, color="grey", ls=":", label="90% target")
    for h, prev in zip(hist[1:], hist[:-1], strict=True):
        if h.get("stage", 1) != prev.get("stage", 1):
            ax.axvline(prev["epoch"] + 0.5, color="grey", ls="--", lw=0.8)
    ax.set(xlabel="epoch", ylabel="top-1 accuracy (%)", ylim=(30, 100),
           title=f"cifar_resnet20 on CIFAR-10 (JPEG copy), {len(hist)} epochs in "
                 f"{len(stages)} stage{'s' if len(stages) > 1 else ''}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "training.png")

    last = hist[-1]
    minutes = sum(h["seconds"] for h in hist) / 60
    rows = "\n".join(
        f"| {h['epoch']} | {h['train_loss']:.3f} | {h['train_acc']:.2f} | {h['test_acc']:.2f} |"
        for h, nxt in zip(hist, [*hist[1:], None], strict=True)
        if h["epoch"] % 10 == 0 or nxt is None or nxt.get("stage", 1) != h.get("stage", 1)
    )
    commands = "\n".join(f"{i}. `{c}`" for i, c in enumerate(stages, 1))
    cpu = _cpu_model()
    title = "# Reference model training: cifar_resnet20 (option A) on CIFAR-10"
    report = OUT / "training.md"
    notes = _hand_written_notes(report)
    report.write_text(f"""{title}

Commands, one per stage (each stage starts from the previous one's weights with a fresh
optimizer and schedule, and ends at learning rate 0; seed in the command; each resumable
with `--resume`):

{commands}

Recipe of every stage: SGD with the stage's `--lr` (default 0.1), momentum 0.9, nesterov,
weight decay 5e-4 (not on BN/bias), batch 128, one-epoch linear warm-up then cosine to 0
over the stage's epochs; random 32x32 crop of the 4-pixel zero-padded image + horizontal
flip; fp32, channels_last, 2 threads. Dashed lines in the curve mark where a stage began.

Result after epoch {last['epoch']}: **test top-1 {last['test_acc']:.2f}%**
(10,000 test images of the JPEG-recompressed copy), train top-1 {last['train_acc']:.2f}%
(running average over the augmented epoch), {minutes:.0f} minutes of training on {cpu}.
The shipped checkpoint is the last epoch; test accuracy was logged for this curve only,
never used to pick a checkpoint or a setting.

![curve](training.png)

| epoch | train loss | train top-1 % | test top-1 % |
| ---: | ---: | ---: | ---: |
{rows}
{notes}""")


def _hand_written_notes(report: Path) -> str:
    """The report's hand-written part, from its ``## Notes`` heading on, kept across rewrites."""
    text = report.read_text() if report.exists() else ""
    start = text.find("\n## Notes")
    return text[start:] if start >= 0 else ""


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
