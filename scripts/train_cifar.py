"""Train the shipped reference model: cifar_resnet20 (option A) on the CIFAR-10 train split.

Reproducible and resumable:
    python scripts/train_cifar.py --data ../shared/datasets/cifar10 --out runs/r20 --epochs 120
    python scripts/train_cifar.py --out runs/r20 --resume          # continues where it stopped
                                           # (another --epochs then re-plans the cosine)
    python scripts/train_cifar.py --init runs/r20/last.pt --out runs/r20-s2 --epochs 32 \
        --lr 0.05 --seed 1                                         # a further stage (restart)

Recipe (written down here and in the checkpoint): SGD lr 0.1, momentum 0.9, nesterov, weight
decay 5e-4 (not on BN/bias), batch 128, one-epoch linear warm-up then cosine to 0, random
crop 32 with 4-pixel zero padding + horizontal flip, no cutout (``--cutout``), seed 0, no label
smoothing (``--label-smoothing``), test top-1 after every epoch (``--eval-every``). Training runs in
fp32 channels_last by default. ``--bf16`` turns on bf16 autocast (weights stay fp32), which
pays only where oneDNN has bf16 convolutions. Measured an epoch on 2 cores: AMD EPYC with
AVX-512 BF16, 74 s fp32 and 41 s bf16; Intel Xeon with AMX, about 45 s bf16; AMD EPYC with
AVX2 only, about 200 s fp32, while bf16 falls back to a reference convolution about 13x
slower (the script warns when ``torch.backends.cpu.get_cpu_capability()`` is below AVX512).
The JPEGs are decoded once into a uint8 array cached next to the run. ``--init`` starts a
new stage from an earlier run's weights (its ``last.pt``, or the shipped checkpoint, whose
commands and epoch count come from the manifest beside it) with a fresh optimizer and
schedule (a warm restart): a long schedule that does not fit one sitting is run as stages,
each ending at learning rate 0 with a usable model; the checkpoint keeps every stage's
command and the stage's curve. Test accuracy is measured for the curve only: the shipped
checkpoint is the last epoch, never one picked on test accuracy.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edgeres.models import create_model  # noqa: E402

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def decode_archive(archive: Path, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``split/<class>/*.jpg`` from a tar.gz into (N,32,32,3) uint8 and labels, cached."""
    if cache.exists():
        z = np.load(cache)
        return z["images"], z["labels"]
    items: list[tuple[str, str, bytes]] = []
    with tarfile.open(archive) as tar:
        for m in tar:
            if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png")):
                parts = Path(m.name).parts
                items.append((parts[-2], m.name, tar.extractfile(m).read()))
    classes = sorted({c for c, _, _ in items})
    items.sort(key=lambda t: (t[0], t[1]))
    images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for _, _, b in items])
    labels = np.array([classes.index(c) for c, _, _ in items], dtype=np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, images=images, labels=labels)
    return images, labels


def to_tensor(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, gen: torch.Generator, cutout: int = 0) -> torch.Tensor:
    """Random 32x32 crop of the 4-pixel zero-padded image and a random horizontal flip.

    ``cutout`` > 0 then applies :func:`cut_out` with that square size.
    """
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=gen)
    dy = torch.randint(0, 9, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(32))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(32))[:, None, None, :]
    batch_idx = torch.arange(n)[:, None, None, None]
    out = padded[batch_idx, torch.arange(3)[None, :, None, None], rows, cols]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(3)
    if cutout:
        out = cut_out(out, cutout, gen)
    return out.contiguous(memory_format=torch.channels_last)


def cut_out(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero (set to the dataset mean) one ``size`` x ``size`` square per image, in every channel,
    centred at a uniformly drawn pixel and clipped at the border (DeVries and Taylor, 2017)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1, 1), generator=gen) - size // 2
    cx = torch.randint(0, w, (n, 1, 1, 1), generator=gen) - size // 2
    rows = torch.arange(h)[None, None, :, None]
    cols = torch.arange(w)[None, None, None, :]
    square = (rows >= cy) & (rows < cy + size) & (cols >= cx) & (cols < cx + size)
    return x.masked_fill(square, 0.0)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), 500):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x[i : i + 500])
        correct += (out.argmax(1) == y[i : i + 500]).sum().item()
    return 100.0 * correct / len(x)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def parse_args() -> argparse.Namespace:
    """The command line of one training stage."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    ap.add_argument("--out", type=Path, default=Path("runs/cifar_resnet20"))
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--cutout", type=int, default=0, metavar="PX",
                    help="cut out one PX x PX square per training image (0: off, as the first "
                         "stages ran; 16 is the CIFAR-10 size of DeVries and Taylor)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=1, metavar="N",
                    help="measure test top-1 (for the curve) every N epochs and at the end")
    ap.add_argument("--bf16", action="store_true",
                    help="bf16 autocast (fast with AVX-512 BF16 or AMX only)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", type=Path,
                    help="start from these weights (a run's last.pt or the shipped checkpoint)")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.bf16 and not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        print("warning: this CPU has no AVX-512, so bf16 autocast runs PyTorch's reference "
              "convolution (about 13x slower than fp32 measured on AVX2); drop --bf16",
              file=sys.stderr)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    xtr, ytr = decode_archive(args.data / "train.tar.gz", args.out / "train_u8.npz")
    xte, yte = decode_archive(args.data / "test.tar.gz", args.out / "test_u8.npz")
    xtr, xte = to_tensor(xtr), to_tensor(xte)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)

    model = create_model("cifar_resnet20").to(memory_format=torch.channels_last)
    opt = make_optimizer(model, args)
    gen = torch.Generator().manual_seed(args.seed)
    history, stages, offset = initial_state(args, model)
    stages.append(" ".join(["python", "scripts/train_cifar.py", *sys.argv[1:]]))
    last = args.out / "last.pt"
    start = 0
    if args.resume and last.exists():
        start, history, offset, stages = resume(last, args, model, opt, gen, stages)

    steps_per_epoch = len(xtr) // args.batch
    total = args.epochs * steps_per_epoch
    for epoch in range(start, args.epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(len(xtr), generator=gen)
        seen = correct = 0
        loss_sum = 0.0
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, steps_per_epoch, args.lr)
            idx = perm[i * args.batch : (i + 1) * args.batch]
            xb, yb = augment(xtr[idx], gen, args.cutout), ytr[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                out = model(xb)
            loss = F.cross_entropy(out.float(), yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(yb)
            correct += (out.argmax(1) == yb).sum().item()
            loss_sum += loss.item() * len(yb)
            if i % 50 == 0:
                print(f"\repoch {epoch + 1}/{args.epochs} {i}/{steps_per_epoch}", end="",
                      flush=True)
        # The 10,000-image test pass costs about 5% of an epoch here; the curve can be sparser.
        numbered = offset + epoch + 1
        measure = numbered % args.eval_every == 0 or epoch + 1 == args.epochs
        test_acc = evaluate(model, xte, yte, args.bf16) if measure else None
        rec = {
            "epoch": numbered, "stage": len(stages), "train_loss": loss_sum / seen,
            "train_acc": 100.0 * correct / seen, "test_acc": test_acc, "seconds": time.time() - t0,
        }
        history.append(rec)
        print(f"\r{json.dumps(rec)}", flush=True)
        ck = {
            "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
            "generator": gen.get_state(), "epoch": epoch + 1, "history": json.dumps(history),
            "offset": offset, "stages": json.dumps(stages),
            "args": json.dumps({k: str(v) for k, v in vars(args).items()}),
        }
        save_checkpoint(ck, history, args.out)


def save_checkpoint(ck: dict, history: list[dict], out: Path) -> None:
    """``out/last.pt`` replaced whole (a stopped run resumes from the last full epoch), and
    the curve as ``history.json``."""
    torch.save(ck, out / "last.tmp")
    (out / "last.tmp").replace(out / "last.pt")
    (out / "history.json").write_text(json.dumps(history, indent=1))


def make_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> Any:
    """Nesterov SGD; weight decay on weights only (not on biases or BN parameters)."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, momentum=0.9, nesterov=True,
    )


def initial_state(args: argparse.Namespace, model: torch.nn.Module
                  ) -> tuple[list[dict], list[str], int]:
    """(history, stages, offset) of a new stage: ``stages`` holds the command of every stage
    that led here, ``history`` the whole curve; ``offset`` is how many epochs earlier stages
    ran, so epochs number on across stages. ``--init`` loads its weights into ``model``."""
    if not args.init:
        return [], [], 0
    parent = torch.load(args.init, weights_only=True)
    if "state_dict" in parent:  # a training checkpoint of this script
        model.load_state_dict(parent["state_dict"])
        history = json.loads(parent.get("history", "[]"))
        return history, stages_of(parent), len(history)
    model.load_state_dict(parent)  # a bare state dict: the shipped checkpoint, whose lineage
    stages, offset = shipped_lineage(args.init)  # is in its manifest
    return [], stages, offset


def resume(last: Path, args: argparse.Namespace, model: torch.nn.Module, opt: Any, gen: Any,
           stages: list[str]) -> tuple[int, list[dict], int, list[str]]:
    """Load ``last`` into the model, optimizer and generator: (start epoch, history, offset,
    stages)."""
    ck = torch.load(last, weights_only=True)
    model.load_state_dict(ck["state_dict"])
    opt.load_state_dict(ck["optimizer"])
    gen.set_state(ck["generator"])
    start, history = ck["epoch"], json.loads(ck["history"])
    stages = json.loads(ck.get("stages", "[]")) or stages
    planned = json.loads(ck.get("args", "{}")).get("epochs")
    if planned is not None and int(planned) != args.epochs:
        # The cosine is stretched or shortened from here on; the record says so.
        stages[-1] += f" (at epoch {start} resumed with --epochs {args.epochs})"
    print(f"resumed at epoch {start}", flush=True)
    return start, history, ck.get("offset", 0), stages


def shipped_lineage(weights: Path) -> tuple[list[str], int]:
    """The stage commands and epoch count the manifest beside a shipped checkpoint records.

    A run's curve lives in its training checkpoint under runs/, which is not in git; starting
    from the shipped weights keeps the epoch numbering and the commands, not the earlier curve.
    """
    manifest = weights.resolve().parent / "manifest.json"
    entry = {}
    if manifest.exists():
        entry = json.loads(manifest.read_text())["files"].get(weights.name, {})
    if "command" not in entry:
        sys.exit(f"{weights} is a bare state dict with no manifest entry beside it: give a "
                 "training checkpoint (runs/<name>/last.pt) to --init")
    return entry["command"].split(" && "), int(entry["epoch"])


def stages_of(ck: dict) -> list[str]:
    """The training commands, one per stage, that produced checkpoint ``ck``, in order."""
    stages = json.loads(ck.get("stages", "[]"))
    if stages:
        return stages
    a = json.loads(ck.get("args", "{}"))  # written before stages were recorded
    return [f"python scripts/train_cifar.py --data {a.get('data')} --out {a.get('out')} "
            f"--epochs {a.get('epochs')}"]


if __name__ == "__main__":
    main()
