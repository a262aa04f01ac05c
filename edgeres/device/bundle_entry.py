"""Classify images with the model in this folder: numpy, Pillow and one runtime, nothing else.

Usage:
    python infer.py IMAGE|FOLDER [...] [--top-k 5] [--json] [--threads N]
    python infer.py --verify [--json] [--golden FILE]

This file was written by ``edgeres package``. The code it runs is in ``edgeres_device/``:
edgeres' own device modules (preprocessing, the metadata record and its checks, the runtime,
the hardware rules and the golden check) copied unchanged, so results match ``edgeres
predict`` and ``edgeres verify`` on the same model. Everything the code needs to know about the
model comes from ``metadata.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _main() -> int:
    """Run ``edgeres.device.infer.main`` from this bundle's ``edgeres_device`` folder."""
    folder = Path(__file__).resolve().parent
    sys.path.insert(0, str(folder / "edgeres_device"))
    from edgeres.device.infer import main

    return main(folder=folder)


if __name__ == "__main__":
    sys.exit(_main())
