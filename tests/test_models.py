"""The model zoo: every registered model builds, runs and has its reference parameter count."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from edgeres.errors import UnknownModelError
from edgeres.models import CSPStage, ZeroPadShortcut, create_model, list_models, model_info
from edgeres.models._profile import count_params

# torchvision's published counts (torchvision.models docs, "Params") and the CIFAR ResNet paper's
# (He et al. 2015, table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M with option A shortcuts) where they
# exist; otherwise a frozen value whose derivation is given beside it. In the derivations
# basic(i, o) = 9io + 9o² + 4o (two 3x3 convs and two BNs) and a projection adds io + 2o.
REFERENCE_PARAMS: dict[str, int] = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "wide_resnet50_2": 68_883_240,
    "cifar_resnet20": 269_722,
    "cifar_resnet32": 464_154,
    "cifar_resnet44": 658_586,
    "cifar_resnet56": 853_018,
    "cifar_resnet110": 1_727_962,
    # resnet20's convs and fc; BN channels are also equal (688): the stem BN (16) and the
    # narrower bn1 of two stage-opening blocks (-16, -32) are offset by final_bn (+64).
    "cifar_preact_resnet20": 269_722,
    # resnet18 - 2 x 896 BN channels: no stem BN (-64), bn1 on the stage inputs
    # (-64-128-256), bare projections (-128-256-512), final_bn (+512).
    "preact_resnet18": 11_687_720,
    # the plain networks + one alpha and one beta scalar per block (9 and 8 blocks).
    "cifar_wrc_resnet20": 269_722 + 2 * 9,
    "wrc_resnet18": 11_689_512 + 2 * 8,
    # ImageNet networks with a 3x3x3x64 stem (1,728 instead of 9,408) and a 10-class fc.
    "cifar_resnet18": 11_689_512 - 7_680 - (513_000 - 5_130),
    "cifar_resnet34": 21_797_672 - 7_680 - (513_000 - 5_130),
    "cifar_resnet50": 25_557_032 - 7_680 - (2_049_000 - 20_490),
    # sum of basic(i, o) + projection over 3→64→128→256, + fc 256x10+10.
    "tiny_resnet": 1_190_922,
    # the same over 3→64→128→256→512→1024→2048, + fc 2048x10+10.
    "tiny_resnet28": 78_300_682,
    # stem 3x3x3x32 + 64, then basic blocks (3, 4, 6, 6, 3) at widths 32..512 with a
    # projection where stride or width changes (stages 1, 2, 3, 4, 5), no fc.
    "resnet45": 21_981_408,
    # stem 9,408 + 128; per stage (out = 128, 256, 512, 1024): down conv (1x1 in stage 1,
    # 3x3/2 after) + BN, n bottlenecks on h = out/2 with width h/2
    # (hw + 9w² + wh + 4w + 2h), 1x1 transition + BN; fc 1024x1000+1000.
    "cspresnet50": 12_738_088,
}

# Model inputs for the forward test: ImageNet models at 64x64 to keep the suite fast.
_SMALL = {"imagenet": (64, 64)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_model_has_a_reference_count():
    """A newly registered model must come with its reference parameter count."""
    assert sorted(REFERENCE_PARAMS) == list_models()


def _net(name: str, **kwargs: Any) -> Any:
    """``create_model``, typed Any for tests that walk submodules by attribute (torch types
    ``Module.__getattr__`` as ``Tensor | Module``)."""
    return create_model(name, **kwargs)


# Built once for both tests that need the real network of these (the build is most of their
# cost): the forward-and-count test and the meta-device profile test.
_PROFILED = ("cifar_resnet20", "cifar_preact_resnet20", "resnet18", "resnext50_32x4d",
             "cspresnet50", "resnet45", "tiny_resnet")
_built: dict[str, torch.nn.Module] = {}


def _model(name: str) -> torch.nn.Module:
    """``create_model(name)``, shared between the tests for the names in ``_PROFILED``."""
    if name not in _PROFILED:
        return create_model(name)
    if name not in _built:
        _built[name] = create_model(name)
    return _built[name]


# The largest take about a second each on 2 cores: `make test` builds them, `make test-fast` not.
_SLOW_BUILDS = {"wide_resnet50_2", "resnet152", "resnet101", "tiny_resnet28"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_BUILDS
                                  else n for n in list_models()])
def test_model_builds_runs_and_counts(name):
    """Every zoo model builds, runs forward to the right shape and has its reference size."""
    info = model_info(name)
    model = _model(name).eval()
    h, w = _SMALL.get(info.family, info.input_size)
    with torch.no_grad():
        out = model(torch.randn(2, info.in_chans, h, w))
    if info.num_classes:
        assert out.shape == (2, info.num_classes)
    else:  # resnet45: the feature map, downsampled 4x (two stride-2 stages)
        assert out.shape == (2, model.num_features, h // 4, w // 4)
    assert torch.isfinite(out).all()
    assert count_params(model) == REFERENCE_PARAMS[name]


def test_option_a_shortcut_is_parameter_free_and_b_projects():
    """Option A zero-pads (no parameters); option B adds exactly the 1x1 projections + BN."""
    a = create_model("cifar_resnet20")
    shortcuts = [m for m in a.modules() if isinstance(m, ZeroPadShortcut)]
    assert len(shortcuts) == 2
    assert all(sum(p.numel() for p in s.parameters()) == 0 for s in shortcuts)
    b = create_model("cifar_resnet20", shortcut="B")
    # 16→32 and 32→64 projections: (16*32 + 2*32) + (32*64 + 2*64)
    assert count_params(b) - count_params(a) == 576 + 2176


def test_option_a_pads_channels_with_zeros():
    """The option A shortcut subsamples and puts the input between zero channels."""
    x = torch.randn(1, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, stride=2)(x)
    assert y.shape == (1, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()


@pytest.mark.parametrize(("name", "size"), [("tiny_resnet", 32), ("tiny_resnet28", 28)])
def test_single_channel_input(name, size):
    """The tiny models take grayscale input with in_chans=1."""
    model = _net(name, in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, size, size)).shape == (2, 10)
    assert model.layer1[0].conv1.in_channels == 1


def test_weighted_residual_scalars_init_to_one_and_weigh_the_branches():
    """alpha and beta exist in every weighted block, start at 1, and scale F(x) and x."""
    model = _net("cifar_wrc_resnet20").eval()
    blocks = [m for m in model.modules() if hasattr(m, "alpha") and m.alpha is not None]
    assert len(blocks) == 9
    assert all(b.alpha.item() == 1.0 and b.beta.item() == 1.0 for b in blocks)
    block = model.layer1[1]
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        block.alpha.zero_()
        block.beta.fill_(2.0)
        assert torch.allclose(block(x), torch.relu(2.0 * x))
    assert _net("resnet18").layer1[0].alpha is None  # plain blocks keep torchvision keys


def test_csp_stage_splits_channels():
    """A CSP stage runs its blocks on half the channels and passes the other half through."""
    stage: Any = CSPStage(type(_net("resnet50").layer1[0]), 64, 128, 2).eval()
    assert stage.blocks[0].conv1.in_channels == 64
    seen: dict[str, torch.Tensor] = {}
    stage.transition.register_forward_hook(lambda m, inp, out: seen.setdefault("in", inp[0]))
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        stage(x)
        bypass = stage.down(x)[:, :64]
    assert torch.equal(seen["in"][:, :64], bypass)


def _torchvision_resnet50_keys() -> list[str]:
    """torchvision's ResNet-50 state-dict keys, generated from its naming convention."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight", *(f"bn1.{k}" for k in bn)]
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            for i in (1, 2, 3):
                keys += [f"{p}.conv{i}.weight", *(f"{p}.bn{i}.{k}" for k in bn)]
            if b == 0:
                keys += [f"{p}.downsample.0.weight", *(f"{p}.downsample.1.{k}" for k in bn)]
    return [*keys, "fc.weight", "fc.bias"]


def test_resnet50_follows_torchvision_naming_and_strides():
    """resnet50's state dict has torchvision's keys, and v1.5 strides sit on conv2."""
    model = _net("resnet50")
    sd = model.state_dict()
    assert sorted(sd) == sorted(_torchvision_resnet50_keys())
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer4.2.bn3.running_var"].shape == (2048,)
    assert sd["fc.bias"].shape == (1000,)
    for stage in (model.layer2, model.layer3, model.layer4):
        assert stage[0].conv1.stride == (1, 1)
        assert stage[0].conv2.stride == (2, 2)
        assert stage[0].downsample[0].stride == (2, 2)
    assert model.layer1[0].conv2.stride == (1, 1)


def test_checkpoint_reloads_strictly_with_identical_logits(tmp_path):
    """A state dict saved from one model loads into a fresh one (strict) with equal logits."""
    torch.manual_seed(1)
    src = _net("cifar_resnet20")
    for m in src.modules():  # non-trivial running statistics, as after training
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    torch.save(src.state_dict(), tmp_path / "ck.pt")
    dst = _net("cifar_resnet20")
    dst.load_state_dict(torch.load(tmp_path / "ck.pt", weights_only=True), strict=True)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src.eval()(x), dst.eval()(x))


def test_models_command_lists_every_model_without_torch():
    """`edgeres models` lists every registered name with its counts from the constant table,
    in a fresh interpreter that never imports torch (it built all 23 networks, ~19 s)."""
    import subprocess
    import sys

    code = ("import sys; from edgeres.cli import cli\n"
            "try:\n cli(['models'])\nexcept SystemExit as e:\n assert e.code in (0, None)\n"
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for name in list_models():
        assert name in out
    assert "11.69M" in out and "1.814G" in out  # resnet18
    assert "0.27M" in out  # cifar_resnet20
    assert out.strip().endswith("TORCH False")


_LARGE = {"resnet101", "resnet152", "wide_resnet50_2", "resnet45", "cifar_resnet50",
          "cifar_resnet34", "resnext50_32x4d", "resnet50", "cspresnet50", "tiny_resnet28"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _LARGE else n
                                  for n in list_models()])
def test_zoo_count_table_matches_the_builders(name):
    """The constant table `edgeres models` prints holds each builder's real parameter and MAC
    counts (profiled on the meta device); every registered model has an entry."""
    from edgeres._zoo_counts import ZOO_COUNTS
    from edgeres.models._profile import profile_model

    assert set(ZOO_COUNTS) == set(list_models())
    assert ZOO_COUNTS[name] == profile_model(name)


@pytest.mark.parametrize(
    ("name", "kwargs", "words"),
    [
        ("resnet18", {"num_classes": -1}, "num_classes >= 0"),
        ("resnet18", {"in_chans": 0}, "in_chans must be >= 1"),
        ("resnet18", {"stem": "imagnet"}, "stem 'imagnet'"),  # was built as the CIFAR stem
        ("cifar_resnet20", {"shortcut": "C"}, "shortcut 'C'"),  # was built as option B
        ("cspresnet50", {"weighted": True}, "CSP stages take only base_width"),  # was ignored
        ("resnet18", {"groups": 32}, "BasicBlock only supports groups=1"),
    ],
)
def test_invalid_builder_options_are_config_errors(name, kwargs, words):
    """Options that would build a wrong net (or crash) raise ConfigError, still a ValueError."""
    from edgeres.errors import ConfigError, EdgeresError

    with pytest.raises(ConfigError, match=words) as e:
        create_model(name, **kwargs)
    assert isinstance(e.value, EdgeresError) and isinstance(e.value, ValueError)


def test_count_macs_gives_back_each_submodule_its_mode():
    """Counting MACs leaves a BN frozen in eval mode frozen, and the rest training."""
    from edgeres.models._profile import count_macs

    model = _net("cifar_resnet20").train()
    model.bn1.eval()
    # conv MACs: stem 27*16*1024, 6 convs of 9*16*16*1024, then 9*16*32*256 + 5 of
    # 9*32*32*256, 9*32*64*64 + 5 of 9*64*64*64; fc 64*10.
    assert count_macs(model, (3, 32, 32)) == 40_551_040
    assert model.training and model.layer1.training
    assert not model.bn1.training


@pytest.mark.parametrize("name", _PROFILED)
def test_profile_on_meta_device_matches_the_built_model(name):
    """`edgeres models` counts on shape-only (meta) networks; the counts are the real ones."""
    from edgeres.models._profile import count_macs, profile_model

    info = model_info(name)
    model = _model(name)
    real = (count_params(model), count_macs(model, (info.in_chans, *info.input_size)))
    assert profile_model(name) == real
    assert real[0] > 0 and real[1] > 0


def test_zoo_defaults_table_matches_the_registry():
    """edgeres.zoo's stdlib table names exactly the registered models, with the same defaults."""
    from edgeres import zoo

    assert sorted(zoo.PRETRAINED_CFGS) == list_models()
    for name in list_models():
        cfg = zoo.pretrained_cfg(name)
        assert model_info(name).pretrained_cfg == cfg and cfg.name == name


def test_zoo_defaults_keep_the_old_names_and_values():
    """zoo_meta's record holds zoo.family_preprocess/family_labels."""
    from edgeres import meta, zoo

    for name in list_models():
        info = model_info(name)
        record = zoo.zoo_meta(name)
        assert record.preprocess == zoo.family_preprocess(info.family, info.input_size,
                                                           info.in_chans)
        assert record.labels == zoo.family_labels(info.family, info.num_classes)
        assert record.input.shape == ("batch", info.in_chans, *info.input_size)
    cifar = zoo.pretrained_cfg("cifar_resnet20")
    assert cifar.preprocess() == zoo.family_preprocess("cifar", (32, 32))
    assert cifar.labels() == meta.CIFAR10_LABELS and cifar.labels(3) == ("class_0", "class_1",
                                                                         "class_2")
    with pytest.raises(UnknownModelError, match=r"unknown model 'resnet_18'.*resnet18"):
        zoo.pretrained_cfg("resnet_18")
