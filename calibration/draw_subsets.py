"""Draw the vendored CIFAR-10 subsets from the TRAIN split (never from test).

    python calibration/draw_subsets.py --archive ../shared/datasets/cifar10/train.tar.gz

Writes two disjoint ImageFolder trees of the original JPEG bytes, each with a manifest
(source path inside the archive, sha256 of each file, counts, seed):
- ``cifar10-calib/``: 50 images per class (500), the calibration set (``--calib cifar10``);
- ``cifar10-val/``: 100 images per class (1,000), the validation set used to tune
  quantization fallbacks (``--val cifar10-val``).
Selection is a seeded permutation per class, so re-running reproduces the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SUBSETS = {"cifar10-calib": 50, "cifar10-val": 100}  # images per class, drawn in this order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, default=Path("../shared/datasets/cifar10/train.tar.gz"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    with tarfile.open(args.archive) as tar:
        members = {m.name: m for m in tar if m.isfile() and m.name.endswith(".jpg")}
        by_class: dict[str, list[str]] = {}
        for name in sorted(members):
            if Path(name).parts[0] != "train":
                msg = f"{name} is not in the train split; refusing to vendor it"
                raise SystemExit(msg)
            by_class.setdefault(Path(name).parts[-2], []).append(name)
        rng = np.random.default_rng(args.seed)
        order = {c: [names[i] for i in rng.permutation(len(names))]
                 for c, names in by_class.items()}
        start = 0
        for subset, per_class in SUBSETS.items():
            entries = []
            for cls in sorted(order):
                for name in order[cls][start : start + per_class]:
                    data = tar.extractfile(members[name]).read()
                    dst = HERE / subset / cls / Path(name).name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(data)
                    entries.append({"file": f"{cls}/{dst.name}", "source": name,
                                    "sha256": hashlib.sha256(data).hexdigest()})
            start += per_class
            manifest = {
                "schema_version": 1, "name": subset, "split": "train",
                "archive": args.archive.name, "seed": args.seed,
                "per_class": per_class, "count": len(entries), "files": entries,
            }
            (HERE / subset / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            print(f"{subset}: {len(entries)} images")


if __name__ == "__main__":
    main()
