"""Past one machine: evaluation and the bench matrix on a Ray cluster (the ``cluster`` extra).

Two things outgrow one machine: a fleet of different devices, each of which must be timed
*on itself*, and evaluation on large labelled sets. Both go through Ray (``pip install
'edgeres[cluster]'``); nothing here schedules or talks to another machine by itself.

- ``RayEvaluator`` / ``ray_evaluator``: the cluster's ``edgeres.evaluate.Evaluator`` (Ray Data
  feeding an actor pool, and candidates as parallel tasks: ``_eval``), which ``quantize`` and
  ``edgeres.evaluation.evaluate_models`` take; ``evaluate_models`` here runs the latter with
  it when given ``cluster=``. Both give the local counts, image for image.
- ``bench_fleet``: ``edgeres bench --cluster`` (``_bench``): one Ray task per device label,
  scheduled on the node that advertises the custom resource ``edgeres-device:LABEL``, running
  bench's own per-model rows there on model files shipped through the object store.
- ``LocalCluster`` (``_local``): a head and extra nodes on this machine, for tests and
  benchmarks.

ray is imported inside functions only, so ``import edgeres.cluster`` costs nothing and the
base install never needs ray; a missing ray is ``errors.missing_extra("ray", "cluster")``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from edgeres.errors import ConfigError, EdgeresError, first_line, missing_extra

if TYPE_CHECKING:  # what __getattr__ loads on first use, for the type checker
    from edgeres.cluster._bench import bench_fleet
    from edgeres.cluster._eval import (
        RayEvaluator,
        candidate_top1,
        evaluate_models,
        evaluate_on_cluster,
        ray_evaluator,
    )
    from edgeres.cluster._local import LocalCluster

__all__ = ["RESOURCE_PREFIX", "ClusterError", "LocalCluster", "RayEvaluator", "bench_fleet",
           "candidate_top1", "connect", "device_labels", "evaluate_models", "evaluate_on_cluster",
           "import_ray", "ray_evaluator"]

log = logging.getLogger(__name__)

# A device joins with: ray start --address=HEAD --resources='{"edgeres-device:orin": 1}'
RESOURCE_PREFIX = "edgeres-device:"


class ClusterError(EdgeresError):
    """The Ray cluster cannot be reached or cannot run the work (with what to do about it)."""


def import_ray() -> Any:
    """The ``ray`` module, or the fix-it error naming the ``cluster`` extra.

    Raises:
        BackendNotAvailable: if ray is not installed.
    """
    try:
        import ray
    except ImportError:
        package = "ray"
        raise missing_extra(package, "cluster") from None
    return ray


def resolve_address(address: str) -> str:
    """``auto`` is ``$RAY_ADDRESS``; anything else is a Ray address as given.

    Raises:
        ConfigError: for ``auto`` without ``RAY_ADDRESS``, or an empty address.
    """
    address = address.strip()
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "").strip()
        if not address:
            msg = ("--cluster auto needs RAY_ADDRESS (the head's HOST:PORT); set it or pass "
                   "--cluster HOST:PORT")
            raise ConfigError(msg)
    if not address:
        msg = "--cluster needs a Ray address (HOST:PORT of the head, or auto)"
        raise ConfigError(msg)
    return address


CONNECT_TIMEOUT_S = 5.0  # a head that does not accept a TCP connection in this long is down


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Open (and close) a TCP connection to the head at ``address`` before Ray is started:
    ``ray.init`` retried an unreachable address for minutes (``--cluster 127.0.0.1:1`` hung).
    Addresses that are not ``[ray://]HOST:PORT`` are left to Ray.

    Raises:
        ClusterError: if nothing accepts the connection within ``timeout`` seconds.
    """
    import socket

    where = address.removeprefix("ray://").rstrip("/")
    host, sep, port = where.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    host = host.strip("[]")  # [::1]:6379
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, OverflowError, ValueError) as e:
        why = "timed out" if isinstance(e, TimeoutError) else (
            getattr(e, "strerror", None) or type(e).__name__)
        msg = (f"cannot connect to the Ray cluster at {address} ({why}, within {timeout:g} s); "
               "start one with `ray start --head` or check the address")
        raise ClusterError(msg) from None


@contextlib.contextmanager
def connect(address: str) -> Iterator[Any]:
    """Connect this process to the Ray cluster at ``address`` as a driver; disconnect after.

    Worker output is not forwarded (progress bars of many nodes would interleave); a failed
    task comes back as its exception.

    Raises:
        BackendNotAvailable: if ray is not installed.
        ConfigError: for a bad address.
        ClusterError: if no cluster answers there.
    """
    address = resolve_address(address)
    check_reachable(address)
    ray = import_ray()
    if ray.is_initialized():  # the caller's own connection (a notebook, a test): keep it
        yield ray
        return
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        msg = (f"cannot connect to the Ray cluster at {address} ({first_line(e)}); start one "
               "with `ray start --head` or check the address")
        raise ClusterError(msg) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def device_labels(ray: Any) -> tuple[str, ...]:
    """Labels of the ``edgeres-device:LABEL`` resources the connected cluster advertises."""
    found = {k[len(RESOURCE_PREFIX):] for k in ray.cluster_resources()
             if k.startswith(RESOURCE_PREFIX)}
    return tuple(sorted(found))


def parse_nodes(text: str | None) -> tuple[str, ...] | None:
    """Parse ``--nodes LABEL[,LABEL]``; None means every labelled node.

    Raises:
        ConfigError: for an empty list or a label with characters Ray resources cannot hold.
    """
    if text is None:
        return None
    labels = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in labels if not all(c.isalnum() or c in "-_." for c in p)]
    if not labels or bad:
        msg = (f"invalid --nodes {text!r}; give device labels separated by commas (letters, "
               "digits, - _ .), as in edgeres-device:LABEL")
        raise ConfigError(msg)
    return tuple(dict.fromkeys(labels))


_EVAL_NAMES = ("RayEvaluator", "candidate_top1", "evaluate_models", "evaluate_on_cluster",
               "ray_evaluator")


def __getattr__(name: str) -> Any:  # the heavier halves load on first use
    if name in _EVAL_NAMES:
        from edgeres.cluster import _eval

        return getattr(_eval, name)
    if name == "bench_fleet":
        from edgeres.cluster._bench import bench_fleet

        return bench_fleet
    if name == "LocalCluster":
        from edgeres.cluster._local import LocalCluster

        return LocalCluster
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
