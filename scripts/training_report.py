"""Write the reference model's training curve and figures to benchmarks/results/training.{md,png}.

    python scripts/training_report.py runs/r20-s2/last.pt

Reads the training checkpoint that ``scripts/train_cifar.py`` writes: the per-epoch history
of every stage (train loss/accuracy and the test accuracy measured after each epoch for the
curve; the shipped checkpoint is the last epoch, not one chosen on test accuracy) and the
command of each stage. The whole curve is also kept in git, in ``training_history.json``
beside the report: runs/ is not in git, and a stage started from the shipped weights
(``--init edgeres/_data/models/...pt``) carries only its own epochs, so the earlier ones come
from that file.
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
    stages = stages_of(ck)
    OUT.mkdir(parents=True, exist_ok=True)
    hist = _whole_curve(json.loads(ck["history"]), OUT / "training_history.json")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in hist]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(ep, [h["train_acc"] for h in hist], label="train top-1 (augmented, running)")
    if ep[0] > 1 or len(ep) < ep[-1]:  # only some epochs of earlier stages are on record
        ax.plot(ep, [h["train_acc"] for h in hist], ".", color="C0", ms=3)
    tested = [h for h in hist if h["test_acc"] is not None]  # --eval-every skips epochs
    ax.plot([h["epoch"] for h in tested], [h["test_acc"] for h in tested],
            label="test top-1 (10,000 images)")
    ax.axhline(90, color="grey", ls=":", label="90% target")
    for h, prev in zip(hist[1:], hist[:-1], strict=True):
        if h.get("stage", 1) != prev.get("stage", 1):
            ax.axvline(prev["epoch"] + 0.5, color="grey", ls="--", lw=0.8)
    ax.set(xlabel="epoch", ylabel="top-1 accuracy (%)", ylim=(30, 100),
           title=f"cifar_resnet20 on CIFAR-10 (JPEG copy), {hist[-1]['epoch']} epochs in "
                 f"{len(stages)} stage{'s' if len(stages) > 1 else ''}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "training.png")

    last = hist[-1]
    timed = [h for h in hist if h.get("seconds") is not None]
    minutes = sum(h["seconds"] for h in timed) / 60
    rows = "\n".join(
        f"| {h['epoch']} | {h['train_loss']:.3f} | {h['train_acc']:.2f} | {_pct(h['test_acc'])} |"
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
over the stage's epochs; cross-entropy with the stage's `--label-smoothing` (default 0);
random 32x32 crop of the 4-pixel zero-padded image + horizontal flip; channels_last,
2 threads, fp32 weights, computed in fp32 or, with `--bf16`, under bf16 autocast. Test
top-1 after every epoch, or every `--eval-every` epochs and at the end. Dashed lines in the
curve mark where a stage began.

Result after epoch {last['epoch']}: **test top-1 {_pct(last['test_acc'])}%**
(10,000 test images of the JPEG-recompressed copy), train top-1 {last['train_acc']:.2f}%
(running average over the augmented epoch); the {len(timed)} epochs with a logged time
took {minutes:.0f} minutes on {cpu}.
The shipped checkpoint is the last epoch; test accuracy was logged for this curve only,
never used to pick a checkpoint or a setting.

![curve](training.png)

| epoch | train loss | train top-1 % | test top-1 % |
| ---: | ---: | ---: | ---: |
{rows}
{notes}""")


def _whole_curve(history: list[dict], kept: Path) -> list[dict]:
    """The checkpoint's curve after the epochs of ``kept`` that precede it; ``kept`` updated.

    The checkpoint is the authority for its own epochs; the kept file supplies the earlier
    ones (for the first stages only the rows of the 2026-12-01 report survive: every tenth
    epoch and each stage's last, without their times).
    """
    earlier = json.loads(kept.read_text()) if kept.exists() else []
    first = history[0]["epoch"] if history else float("inf")
    whole = [h for h in earlier if h["epoch"] < first] + history
    kept.write_text(json.dumps(whole, indent=1) + "\n")
    return whole


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


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
