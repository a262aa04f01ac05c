"""LiteRT int8: ai-edge-quantizer's static int8 on an fp32 .tflite, behind edgeres'
``Quantizer`` Protocol (``quantize --backend litert``). Build-side only: imported by
``edgeres.runtimes.litert``'s ``RUNTIME.quantizer``, never carried to a device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeres.errors import BackendNotAvailable, QuantizationError, first_line
from edgeres.meta import ModelMeta

if TYPE_CHECKING:
    from edgeres.calibration import CalibrationSet
    from edgeres.quantize._report import QuantDetails
    from edgeres.quantize.config import QuantConfig, TargetSpec
    from edgeres.runtime import Predictor


@dataclass(frozen=True)
class DeviceSide:
    """What this build-side module uses of ``edgeres.runtimes.litert``, handed in by its
    ``RUNTIME.quantizer`` so that this module never imports the runtime module (which imports
    this one when asked for a quantizer): no import cycle.

    Attributes:
        backend: ``LiteRTBackend`` (``keep_tensors=True`` exposes every tensor).
        interpreter: the LiteRT ``Interpreter`` class, imported (or BackendNotAvailable).
        quant: a tensor detail's (scale, zero point, dtype), or None for a float tensor.
        write_model: writes model bytes with the record stored inside.
        signature: the signature litert_torch.convert writes.
    """

    backend: Callable[..., Any]
    interpreter: Callable[[], Any]
    quant: Callable[[dict[str, Any]], tuple[float, int, np.dtype] | None]
    write_model: Callable[[Path, bytes, ModelMeta], None]
    signature: str


class LiteRTQuantizer:
    """``edgeres.quantize._protocol.Quantizer`` for a float .tflite: ai-edge-quantizer's
    static int8 (int8 weights per channel, int8 activations, min/max calibration), every
    supported op quantized except the layers asked to stay float.

    A layer is a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED op named by its output tensor;
    ``build(floats)`` adds a ``no_quantize`` recipe entry for each (ai-edge-quantizer matches
    an op by the ``;``-terminated names of its outputs), so ``--exclude`` and the
    ``--max-drop`` fallback work as for the other backends. Activation ranges are collected
    once, with every layer quantized, and serve every candidate.
    """

    backend = "litert"

    def __init__(self, src: Path, calibration: CalibrationSet, spec: TargetSpec,
                 config: QuantConfig, workdir: Path, device: DeviceSide) -> None:
        self._device = device
        device.interpreter()
        try:
            from ai_edge_quantizer import quantizer
        except ImportError:
            msg = "ai-edge-quantizer is not installed; pip install 'edgeres[litert]'"
            raise BackendNotAvailable(msg) from None
        self._src, self.calibration, self.meta = src, calibration, calibration.meta
        self._dir = workdir  # quantize()'s temporary folder, removed with it
        self._q = quantizer.Quantizer(str(src))
        self._q.load_quantization_recipe(_recipe(()))
        self._ranges: dict[str, Any] | None = None
        self._built: dict[frozenset[str], Path] = {}
        self.op_types = _weighted_layers(src.read_bytes())
        self.layers = tuple(self.op_types)
        signatures = device.interpreter()(model_path=str(src)).get_signature_list()
        self._signature = (device.signature if device.signature in signatures
                           else next(iter(signatures), ""))
        self._arg = (signatures.get(self._signature, {}).get("inputs") or ["args_0"])[0]

    @property
    def fp32_path(self) -> Path:
        return self._src

    def calibrate(self) -> None:
        batches = [{self._arg: next(iter(b.values()))} for b in self.calibration]
        try:
            self._ranges = self._q.calibrate({self._signature: batches}, num_threads=1)
        except (ValueError, RuntimeError) as e:
            msg = f"ai-edge-quantizer could not calibrate {self._src} ({first_line(e)})"
            raise QuantizationError(msg) from None

    def check_names(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in self.op_types]
        if unknown:
            shown = ", ".join(repr(n) for n in unknown[:2])
            msg = (f"no layer {shown} in {self._src.name}; a LiteRT layer is named by its output "
                   f"tensor (the quantize report lists them), e.g. {self.layers[0]!r}"
                   if self.layers else f"{self._src.name} has no convolution or dense layer")
            raise QuantizationError(msg)

    def build(self, floats: tuple[str, ...]) -> Path:
        self.check_names(floats)
        key = frozenset(floats)
        if key not in self._built:
            if self._ranges is None:
                self.calibrate()
            self._q.load_quantization_recipe(_recipe(floats))
            result = self._q.quantize(self._ranges, enable_progress_report=False)
            path = self._dir / f"int8-{len(self._built)}.tflite"
            path.write_bytes(bytes(result.quantized_model))
            self._built[key] = path
        return self._built[key]

    def load(self, path: Path, threads: int | None = None) -> Predictor:
        from edgeres.runtime import Predictor
        from edgeres.runtime.backends import BackendOptions

        backend = self._device.backend(path, BackendOptions(threads=threads), meta=self.meta)
        return Predictor(backend, self.meta, path)

    def tensor_runner(self, path: Path, names: Sequence[str]
                      ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        from edgeres.runtime.backends import BackendOptions

        backend = self._device.backend(path, BackendOptions(threads=1), meta=self.meta,
                                keep_tensors=True)
        details = {str(d["name"]): d for d in backend.tensor_details()}
        wanted = [details[n] for n in names if n in details]

        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            backend.run(x)
            out = {}
            for d in wanted:
                value = backend.tensor(d["index"])
                quant = self._device.quant(d)
                out[str(d["name"])] = (value.astype(np.float32) if quant is None else
                                       (value.astype(np.float32) - quant[1]) * quant[0])
            return out

        return run

    def compare_tensors(self, path: Path) -> dict[str, tuple[str, str]]:
        return {name: (name, name) for name in self.layers}  # names survive quantization

    def details(self) -> QuantDetails:
        from edgeres.quantize._report import QuantDetails

        return QuantDetails(format="LiteRT int8 (ai-edge-quantizer static_wi8_ai8)",
                            activation_type="int8", activation_symmetric=False,
                            per_channel=True)

    def save(self, path: Path, dst: Path, meta: ModelMeta) -> None:
        self._device.write_model(dst, path.read_bytes(), meta)


def _recipe(floats: Sequence[str]) -> Any:
    """ai-edge-quantizer's static int8 recipe with ``floats`` (output tensor names) left float."""
    import re

    from ai_edge_quantizer import recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    manager = recipe_manager.RecipeManager()
    manager.add_static_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED,
                              activation_num_bits=8, weight_num_bits=8)
    for name in floats:  # an op's scope is its output names, each followed by ";"
        manager.add_quantization_config(regex=re.escape(name) + ";",
                                        operation_name=TFLOperationName.ALL_SUPPORTED,
                                        algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def _weighted_layers(data: bytes) -> dict[str, str]:
    """Output tensor name -> op type of each convolution and dense op, in graph order."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    codes = [max(model.OperatorCodes(i).BuiltinCode(),
                 model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    kinds = {schema.BuiltinOperator.CONV_2D: "CONV_2D",
             schema.BuiltinOperator.DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D",
             schema.BuiltinOperator.FULLY_CONNECTED: "FULLY_CONNECTED"}
    layers = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        kind = kinds.get(codes[op.OpcodeIndex()])
        if kind is not None:
            layers[graph.Tensors(op.Outputs(0)).Name().decode("utf-8")] = kind
    return layers
