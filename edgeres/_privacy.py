"""Runtime telemetry off unless asked for: edgeres writes nothing outside its outputs by choice.

ONNX Runtime 1.32 creates ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/`` (a device id and
an event store) when it is imported, and uploads events; ``ORT_DISABLE_TELEMETRY=1``, read when
it starts, stops all of it (``ORT_TELEMETRY_DISABLED`` is the later releases' name). OpenVINO's
Python package sends an import event and writes ``~/intel/openvino_ga_cid`` and
``~/intel/stats`` through ``openvino_telemetry``; hidden, it falls back to its own no-op stub.
``EDGERES_TELEMETRY=1`` leaves both runtimes as they are. Called from ``edgeres/__init__.py``,
so it runs before anything of edgeres imports a runtime. Stdlib only.
"""

from __future__ import annotations

import os
import sys

OPT_IN = "EDGERES_TELEMETRY"  # "1": leave ONNX Runtime's and OpenVINO's telemetry on
_ORT_OFF = ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED")


def quiet_telemetry() -> None:
    """Turn ONNX Runtime's and OpenVINO's telemetry off for this process (and its children),
    unless ``EDGERES_TELEMETRY=1``; a value the user set for ORT's variables is kept."""
    if os.environ.get(OPT_IN) == "1":
        return
    for name in _ORT_OFF:
        os.environ.setdefault(name, "1")
    if "openvino_telemetry" not in sys.modules:
        # None in sys.modules makes ``import openvino_telemetry`` raise ImportError, which
        # openvino.tools.ovc answers with its telemetry_stub (and NNCF with no telemetry).
        # typeshed types sys.modules values as ModuleType; None is the documented import block.
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
