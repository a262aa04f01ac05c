"""Check that edgeres's ImageNet ResNets are torchvision's, key for key and logit for logit.

For each model with a torchvision counterpart, the script builds both (random init, nothing is
downloaded), compares the state-dict keys (order included) and shapes, loads torchvision's
state dict into the edgeres model with ``strict=True`` and compares eval-mode logits on random
inputs. Results go to ``benchmarks/results/torchvision_compat.json``.

Never run in CI: torchvision is not an edgeres dependency and must not be installed in the
project's environment. Run it from a throwaway one, e.g.::

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch torchvision
    /tmp/tv/bin/python benchmarks/check_torchvision_compat.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

from edgeres.models import create_model  # noqa: E402
from edgeres.models._profile import count_params  # noqa: E402

MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
          "wide_resnet50_2")
RESULTS = ROOT / "benchmarks" / "results" / "torchvision_compat.json"


def _randomise_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine terms, so a mis-mapped tensor changes the logits."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)


def check(name: str) -> dict[str, Any]:
    """Compare one model with torchvision's; return the findings."""
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None).eval()
    _randomise_bn(tv)
    ours = create_model(name).eval()
    tv_sd, our_sd = tv.state_dict(), ours.state_dict()
    shapes_differ = [k for k in tv_sd if k in our_sd and tv_sd[k].shape != our_sd[k].shape]
    ours.load_state_dict(tv_sd, strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = tv(x), ours(x)
    return {
        "model": name,
        "params": count_params(ours),
        "torchvision_params": count_params(tv),
        "same_keys_in_order": list(tv_sd) == list(our_sd),
        "shapes_differ": shapes_differ,
        "strict_load": True,
        "logits_identical": bool(torch.equal(a, b)),
        "max_abs_diff": float((a - b).abs().max()),
    }


def main() -> None:
    """Run the checks, print one line per model and write the JSON results."""
    results = []
    for name in MODELS:
        r = check(name)
        results.append(r)
        print(f"{name:18s} keys={r['same_keys_in_order']} shapes_differ={r['shapes_differ']} "
              f"params={r['params']:,} (tv {r['torchvision_params']:,}) "
              f"identical_logits={r['logits_identical']} max_abs_diff={r['max_abs_diff']:.1e}")
    doc = {
        "schema_version": 1,
        "check": "torchvision_compat",
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__},
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    ok = all(r["same_keys_in_order"] and r["logits_identical"] and not r["shapes_differ"]
             for r in results)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
