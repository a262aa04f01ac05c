"""The zoo's parameter and MAC counts as constants, so `edgeres models` lists them at once.

They are properties of the code (the builders and their default input sizes), not of any
weights: ``edgeres.models._profile.profile_model`` counts them on the ``meta`` device, and
``tests/test_models.py`` checks every entry against it, so a changed builder fails the tests
until this table is regenerated:

    python -c "from edgeres.models import list_models; from edgeres.models._profile import \
profile_model; [print(f'    {n!r}: {profile_model(n)},') for n in list_models()]"

Layer 0: stdlib only (no torch), like ``zoo.py``.
"""

from __future__ import annotations

# name -> (parameters, multiply-accumulates of one image at the default input size)
ZOO_COUNTS: dict[str, tuple[int, int]] = {
    "cifar_preact_resnet20": (269722, 40551040),
    "cifar_resnet110": (1727962, 252887680),
    "cifar_resnet18": (11173962, 555422720),
    "cifar_resnet20": (269722, 40551040),
    "cifar_resnet32": (464154, 68862592),
    "cifar_resnet34": (21282122, 1159402496),
    "cifar_resnet44": (658586, 97174144),
    "cifar_resnet50": (23520842, 1297829888),
    "cifar_resnet56": (853018, 125485696),
    "cifar_wrc_resnet20": (269740, 40551040),
    "cspresnet50": (12738088, 1711824896),
    "preact_resnet18": (11687720, 1814073344),
    "resnet101": (44549160, 7801405440),
    "resnet152": (60192808, 11513626624),
    "resnet18": (11689512, 1814073344),
    "resnet34": (21797672, 3663761408),
    "resnet45": (21981408, 5882904576),
    "resnet50": (25557032, 4089184256),
    "resnext50_32x4d": (25028904, 4230479872),
    "tiny_resnet": (1190922, 1214122496),
    "tiny_resnet28": (78300682, 296503296),
    "wide_resnet50_2": (68883240, 11398021120),
    "wrc_resnet18": (11689528, 1814073344),
}
