"""Checkpoint loading: safe unpickling only, common layouts, and one-line fix-it errors."""

from __future__ import annotations

import hashlib
import random
from typing import cast

import pytest
import torch
from torch import nn

from edgeres.errors import CheckpointError
from edgeres.models import ResNet, create_model
from edgeres.models.weights import infer_num_classes, load_checkpoint, load_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Payload:
    """An object whose unpickling would run code: it must never be loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # creating the marker file proves code ran


def _trained_like(name: str = "cifar_resnet20", **kwargs) -> nn.Module:
    torch.manual_seed(3)
    model = create_model(name, **kwargs)
    for m in model.modules():  # non-trivial BN statistics, so a wrong load shows in the logits
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _same_logits(a: nn.Module, b: nn.Module) -> bool:
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "module_prefix"])
def test_common_checkpoint_layouts_load(tmp_path, layout):
    """Bare, {'state_dict'}/{'model'}-wrapped and DataParallel-prefixed checkpoints all load."""
    src = _trained_like()
    sd = src.state_dict()
    payload = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 90, "best_acc": 91.3},
        "model": {"model": sd, "optimizer": {"lr": 0.1}},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
    }[layout]
    path = tmp_path / "ck.pt"
    torch.save(payload, path)
    loaded = load_weights("cifar_resnet20", path)
    assert _same_logits(src, loaded.model)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not loaded.model.training


def test_load_checkpoint_returns_tensors_and_file_hash(tmp_path):
    """load_checkpoint gives the state dict and the sha256 of the file it read."""
    path = tmp_path / "ck.pt"
    torch.save({"fc.weight": torch.ones(7, 4), "fc.bias": torch.zeros(7)}, path)
    state, sha = load_checkpoint(path)
    assert set(state) == {"fc.weight", "fc.bias"}
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert infer_num_classes(state) == 7


def test_num_classes_comes_from_the_checkpoint(tmp_path):
    """A 7-class checkpoint builds a 7-class model without --num-classes."""
    src = _trained_like(num_classes=7)
    torch.save(src.state_dict(), tmp_path / "ck.pt")
    loaded = load_weights("cifar_resnet20", tmp_path / "ck.pt")
    assert loaded.num_classes == 7
    assert cast(nn.Linear, loaded.model.fc).out_features == 7
    assert _same_logits(src, loaded.model)
    assert load_weights("cifar_resnet20", tmp_path / "ck.pt", num_classes=7).num_classes == 7


def test_conflicting_num_classes_is_an_error(tmp_path):
    """An explicit class count that disagrees with fc.weight is refused, naming both."""
    torch.save(_trained_like().state_dict(), tmp_path / "ck.pt")
    with pytest.raises(CheckpointError, match=r"num_classes 100 disagrees.*10 rows") as e:
        load_weights("cifar_resnet20", tmp_path / "ck.pt", num_classes=100)
    assert "\n" not in str(e.value)


def test_arbitrary_object_pickle_is_refused_unloaded(tmp_path):
    """A checkpoint pickling arbitrary objects is refused as unsafe and its code never runs."""
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _trained_like().state_dict(), "x": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refused as unsafe") as e:
        load_weights("cifar_resnet20", path)
    assert "state_dict()" in str(e.value)  # says how to re-save as a plain state dict
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_pickled_module_is_refused_as_unsafe(tmp_path):
    """A whole pickled nn.Module (torch.save(model)) is refused, naming its class."""
    path = tmp_path / "module.pt"
    torch.save(_trained_like(), path)
    with pytest.raises(CheckpointError, match=r"unsafe.*ResNet"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"epoch 1 loss 2.3\nepoch 2 loss 1.9\n", "text file"),
        (random.Random(0).randbytes(4096), "not a PyTorch checkpoint"),
        (b"", "empty"),
    ],
)
def test_non_checkpoint_files_are_refused(tmp_path, content, words):
    """Text, random bytes and empty files give a one-line 'not a checkpoint' error."""
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as e:
        load_checkpoint(path)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_non_state_dict_payloads_are_refused(tmp_path):
    """A list, or a dict of non-tensors without a known wrapper key, is not a state dict."""
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        load_checkpoint(tmp_path / "list.pt")
    torch.save({"epoch": 3, "weights": torch.ones(2)}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="entries epoch are not tensors"):
        load_checkpoint(tmp_path / "mixed.pt")


def test_missing_file_is_an_error(tmp_path):
    """A checkpoint path that does not exist says so (and names the registered weights)."""
    with pytest.raises(CheckpointError, match=r"does not exist.*cifar10"):
        load_weights("cifar_resnet20", tmp_path / "nope.pt")


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    """A mis-shaped tensor is reported with its key, the checkpoint's and the model's shape."""
    sd = _trained_like().state_dict()
    sd["layer1.0.conv1.weight"] = torch.zeros(8, 16, 3, 3)
    torch.save(sd, tmp_path / "ck.pt")
    with pytest.raises(CheckpointError) as e:
        load_weights("cifar_resnet20", tmp_path / "ck.pt")
    msg = str(e.value)
    assert "layer1.0.conv1.weight is (8, 16, 3, 3) in the checkpoint but (16, 16, 3, 3)" in msg
    assert "\n" not in msg


def test_missing_and_unexpected_keys_are_named(tmp_path):
    """A checkpoint from another depth names the first missing / unexpected keys."""
    torch.save(_trained_like("cifar_resnet20").state_dict(), tmp_path / "r20.pt")
    with pytest.raises(CheckpointError, match=r"missing keys layer1\.3\.") as e:
        load_weights("cifar_resnet32", tmp_path / "r20.pt")
    assert "more" in str(e.value)  # long lists are cut to the first few
    torch.save(_trained_like("cifar_resnet32").state_dict(), tmp_path / "r32.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys layer1\.3\."):
        load_weights("cifar_resnet20", tmp_path / "r32.pt")


def test_registered_weights_name_checks_the_model():
    """The registered 'cifar10' weights belong to cifar_resnet20 and are refused for others."""
    with pytest.raises(CheckpointError, match="are for cifar_resnet20, not resnet18"):
        load_weights("resnet18", "cifar10")


def test_checkpoint_without_batchnorm_counters_loads(tmp_path):
    """A pre-0.4.1 state dict (torchvision's original weights) has no num_batches_tracked."""
    src = _trained_like()
    old = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(src.state_dict())
    torch.save(old, tmp_path / "old.pt")
    loaded = load_weights("cifar_resnet20", tmp_path / "old.pt")
    assert loaded.num_classes == 10
    assert _same_logits(src, loaded.model)


def test_checkpoint_without_classifier_is_a_feature_extractor(tmp_path):
    """A backbone-only checkpoint (no fc.*) builds the headless model, not a 10-class one."""
    src = _trained_like()
    torch.save({k: v for k, v in src.state_dict().items() if not k.startswith("fc.")},
               tmp_path / "backbone.pt")
    loaded = load_weights("cifar_resnet20", tmp_path / "backbone.pt")
    assert loaded.num_classes == 0
    assert not hasattr(loaded.model, "fc")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = loaded.model(x)
        assert feats.shape == (2, 64, 8, 8)
        assert torch.equal(feats, cast(ResNet, src).forward_features(x))
    with pytest.raises(CheckpointError, match="missing keys fc.weight, fc.bias"):
        load_weights("cifar_resnet20", tmp_path / "backbone.pt", num_classes=10)


def test_numpy_scalars_in_a_training_checkpoint_get_a_working_fix(tmp_path):
    """A dict checkpoint refused for a numpy scalar is told to re-save its entry, which works."""
    import numpy as np

    src = _trained_like()
    path = tmp_path / "train.pt"
    torch.save({"state_dict": src.state_dict(), "best_acc": np.float64(91.3)}, path)
    with pytest.raises(CheckpointError, match="refused as unsafe") as e:
        load_weights("cifar_resnet20", path)
    msg = str(e.value)
    assert "numpy" in msg and "ckpt['state_dict']" in msg and ".state_dict()" not in msg
    ckpt = torch.load(path, weights_only=False)  # the message's recipe, on a file we made
    torch.save(ckpt["state_dict"], tmp_path / "clean.pt")
    assert _same_logits(src, load_weights("cifar_resnet20", tmp_path / "clean.pt").model)
