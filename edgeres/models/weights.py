"""Checkpoint loading: ``torch.load(weights_only=True)`` only, with one-line fix-it errors.

A checkpoint is a state dict, bare or wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``
(the usual training-script layouts), optionally with the ``module.`` prefix that
``DataParallel``/``DistributedDataParallel`` adds. Nothing here unpickles arbitrary objects: a
file that needs that is refused as unsafe, with the command that re-saves it as a plain state
dict. ``num_classes`` comes from the checkpoint's classifier (``fc.weight`` rows) so it is never
typed in twice (CONTRIBUTING R3).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from edgeres import names
from edgeres._fs import sha256_file
from edgeres.errors import CheckpointError, UnknownNameError

__all__ = ["LoadedWeights", "infer_num_classes", "load_checkpoint", "load_weights"]

# Keys under which training scripts commonly nest the state dict, tried in this order.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
# Prefixes added by DataParallel/DDP ("module.") and torch.compile ("_orig_mod.").
_PREFIXES = ("module.", "_orig_mod.")
_CLASSIFIER_KEY = "fc.weight"  # torchvision's head name, used by every zoo model
_BN_COUNTER = ".num_batches_tracked"  # BatchNorm buffer absent from pre-0.4.1 checkpoints
_SHOW = 3  # how many offending keys an error message names


@dataclass(frozen=True)
class LoadedWeights:
    """A model with its checkpoint loaded, and where the weights came from.

    Attributes:
        model: the model, weights loaded with ``strict=True``, in eval mode.
        num_classes: classifier outputs (0 for a feature extractor).
        path: the checkpoint file read.
        sha256: hex sha256 of that file, for the metadata record's provenance.
    """

    model: nn.Module
    num_classes: int
    path: Path
    sha256: str


def _what_it_is(path: Path) -> str:
    """A few words on what a file torch.load cannot read looks like."""
    head = path.read_bytes()[:512]
    if not head:
        return "the file is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "torch.load cannot read it"
    readable = all(c.isprintable() or c.isspace() for c in text)
    return "it is a text file" if readable else "torch.load cannot read it"


def _refusal(path: Path, err: Exception) -> CheckpointError:
    """Turn a ``torch.load`` failure into the right one-line message."""
    # torch words the refusal differently by version and by why the global is refused:
    # "Unsupported global: GLOBAL argparse.Namespace was not an allowed global" (a class), and
    # since 2.6 "Trying to load unsupported GLOBAL posix.system whose module posix is blocked"
    # (a function that runs code).
    unsafe = re.search(r"unsupported global(?:: GLOBAL)? ([\w.]+)", str(err), flags=re.IGNORECASE)
    if unsafe:
        what = unsafe.group(1)
        # A numpy global means a training checkpoint (a dict) with numpy scalars beside the
        # tensors, such as a best accuracy: it has no .state_dict(), its weights are an entry.
        resave = (
            "ckpt = torch.load(path, weights_only=False); torch.save(ckpt['state_dict'], "
            "'clean.pt') with the entry that holds the weights"
            if what.startswith("numpy")
            else "torch.save(torch.load(path, weights_only=False).state_dict(), 'clean.pt')"
        )
        msg = (
            f"checkpoint {path} was refused as unsafe: it pickles {what}, and loading "
            f"arbitrary objects can run code; if you trust the file, re-save it as a plain "
            f"state dict: {resave}"
        )
    else:
        msg = (
            f"{path} is not a PyTorch checkpoint ({_what_it_is(path)}); "
            "give a file written by torch.save(model.state_dict(), path)"
        )
    return CheckpointError(msg)


def _unwrap(obj: object, path: Path) -> dict[str, Tensor]:
    """The state dict inside a loaded checkpoint object, prefixes stripped."""
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        msg = (f"{path} holds a {type(obj).__name__}, not a state dict; "
               "save it with torch.save(model.state_dict(), path)")
        raise CheckpointError(msg)
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        msg = (f"{path} is not a state dict: entries {', '.join(bad[:_SHOW])} are not tensors; "
               f"save model.state_dict() alone, or nest it under one of {', '.join(_WRAPPER_KEYS)}")
        raise CheckpointError(msg)
    state = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    return state


def load_checkpoint(path: Path) -> tuple[dict[str, Tensor], str]:
    """Read a state dict from ``path`` with ``torch.load(weights_only=True)``.

    Args:
        path: a ``.pt``/``.pth`` file: a state dict, or one nested under ``state_dict``,
            ``model`` or ``model_state_dict``; ``module.`` prefixes are stripped.

    Returns:
        ``(state_dict, sha256)``, the tensors on the CPU and the file's hex sha256.

    Raises:
        CheckpointError: if the file is missing, not a checkpoint, unsafe to unpickle, or holds
            no state dict.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        msg = f"checkpoint {path} {what}; give the path of a .pt/.pth file"
        raise CheckpointError(msg)
    try:
        with warnings.catch_warnings():
            # Pickle protocol notices are noise here: refusal is reported as an error below.
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types (UnpicklingError, EOFError, ...)
        raise _refusal(path, e) from None
    return _unwrap(obj, path), sha256_file(path)


def infer_num_classes(state: Mapping[str, Tensor]) -> int | None:
    """Classifier outputs from ``fc.weight`` rows; None when the checkpoint has no head."""
    fc = state.get(_CLASSIFIER_KEY)
    return int(fc.shape[0]) if fc is not None and fc.ndim == 2 else None


def _first(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def check_fits(model: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    """Raise a one-line ``CheckpointError`` unless ``state`` loads into ``model`` strictly.

    Args:
        model: the model to load into.
        state: the checkpoint's state dict.
        what: how to name the model in the message (its zoo name).

    Raises:
        CheckpointError: naming the first missing, unexpected or mis-shaped keys.
    """
    own = model.state_dict()
    # BatchNorm fills a missing num_batches_tracked itself (it is not used in eval mode), and
    # checkpoints saved before PyTorch 0.4.1, torchvision's original ResNet weights among them,
    # have none; load_state_dict(strict=True) accepts them, so must this check.
    missing = [k for k in own if k not in state and not k.endswith(_BN_COUNTER)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = [f"missing keys {_first(missing)}"] if missing else []
        parts += [f"unexpected keys {_first(unexpected)}"] if unexpected else []
        msg = (f"checkpoint does not fit {what}: {'; '.join(parts)}; "
               "was it saved from another model?")
        raise CheckpointError(msg)
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if shapes:
        detail = ", ".join(
            f"{k} is {tuple(state[k].shape)} in the checkpoint but {tuple(own[k].shape)} "
            "in the model" for k in shapes[:_SHOW]
        )
        more = f" (+{len(shapes) - _SHOW} more)" if len(shapes) > _SHOW else ""
        msg = f"checkpoint does not fit {what}: {detail}{more}; was it saved from another model?"
        raise CheckpointError(msg)


def _resolve(weights: str | Path) -> Path:
    try:
        return names.resolve_weights(weights)
    except UnknownNameError:
        if str(weights) in names.WEIGHTS:
            raise  # a registered name whose shipped file is missing: that message is better
    registered = ", ".join(sorted(names.WEIGHTS))
    msg = (f"checkpoint {weights} does not exist; give the path of a .pt/.pth file "
           f"or a registered name ({registered})")
    raise CheckpointError(msg)


def load_weights(
    model: str | nn.Module, weights: str | Path, *, num_classes: int | None = None
) -> LoadedWeights:
    """Build (or take) a model and load a checkpoint into it with ``strict=True``.

    Args:
        model: a zoo name (built with the checkpoint's ``num_classes``, 0 when it has no
            ``fc`` and ``num_classes`` is None) or an ``nn.Module``.
        weights: a checkpoint path, or a registered weights name such as ``cifar10``.
        num_classes: the classes the caller expects; an error if the checkpoint disagrees.

    Returns:
        The loaded model in eval mode, its class count, the file and its sha256.

    Raises:
        CheckpointError: for every way the checkpoint can be unreadable, unsafe or not fit.
        UnknownModelError: if ``model`` is an unknown zoo name.
    """
    from edgeres.models import create_model

    expected_model = names.WEIGHTS_MODEL.get(str(weights)) if not Path(weights).exists() else None
    if isinstance(model, str) and expected_model and expected_model != model:
        msg = f"weights {weights!r} are for {expected_model}, not {model}; export {expected_model}"
        raise CheckpointError(msg)
    path = _resolve(weights)
    state, sha = load_checkpoint(path)
    found = infer_num_classes(state)
    if num_classes is not None and found is not None and num_classes != found:
        msg = (f"num_classes {num_classes} disagrees with the checkpoint, whose classifier "
               f"fc.weight has {found} rows; drop --num-classes or use a matching checkpoint")
        raise CheckpointError(msg)
    # No classifier in the checkpoint and no class count asked for: a feature extractor
    # (CONTRIBUTING R3: the count comes from the checkpoint), not the registry's default head.
    classes = found if found is not None else (0 if num_classes is None else num_classes)
    what = model if isinstance(model, str) else type(model).__name__
    net = create_model(model, num_classes=classes) if isinstance(model, str) else model
    check_fits(net, state, what)
    net.load_state_dict(state, strict=True)
    head = getattr(net, "fc", None)
    final = head.out_features if isinstance(head, nn.Linear) else 0
    return LoadedWeights(model=net.eval(), num_classes=final, path=path, sha256=sha)
