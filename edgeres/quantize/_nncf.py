"""OpenVINO int8 through NNCF: ``nncf.quantize`` on the ONNX model read by OpenVINO, saved as IR.

The IR is saved with ``compress_to_fp16=False`` (the float parts stay fp32, as measured) and
carries the metadata record in ``rt_info`` under ``edgeres``, so ``edgeres.runtime`` and
``edgeres.meta.read_ir_meta`` read it back. Both IR files are written in a temporary directory
beside the destination and moved into place only when complete. Layer names are the ONNX node
names; OpenVINO calls a convolution's op ``<name>/WithoutBiases`` once its bias is split off.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeres._fs import LOW_SPACE, output_dir
from edgeres.calibration import CalibrationSet, nncf_dataset
from edgeres.errors import ModelFileError, QuantizationError, first_line, missing_extra
from edgeres.meta import METADATA_KEY, ModelMeta
from edgeres.quantize._ranges import quiet
from edgeres.quantize._report import QuantDetails
from edgeres.quantize.config import TargetSpec

log = logging.getLogger(__name__)

WEIGHTED_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")
_SUFFIX = "/WithoutBiases"
# NNCF range estimators per --method; None keeps NNCF's defaults for the preset.
_ESTIMATORS = {"minmax": "MINMAX", "percentile": "MEAN_QUANTILE", "entropy": "HISTOGRAM"}


class NncfQuantizer:
    """Builds OpenVINO int8 models of one source model with any set of layers left in float.

    Args:
        src: the float ONNX model.
        calibration: the selected calibration samples.
        spec: the deployment target (TensorRT is not an OpenVINO target).
        per_channel: per-channel weight scales.
        method: a range estimator name, or None for NNCF's defaults.
        preset: "performance" or "mixed".
        workdir: temporary directory owned by the caller.
    """

    backend = "openvino"

    def __init__(self, src: Path, calibration: CalibrationSet, spec: TargetSpec, *,
                 per_channel: bool, method: str | None, preset: str, workdir: Path) -> None:
        try:
            import nncf  # noqa: F401 - fail early with the extra to install
            import openvino as ov
        except ImportError as e:
            raise missing_extra(e.name or "nncf", "quantize") from None
        if spec.name == "tensorrt":
            msg = "the openvino backend cannot target tensorrt; use --backend ort"
            raise QuantizationError(msg)
        self.src, self.calibration, self.spec = src, calibration, spec
        self.per_channel, self.method, self.preset = per_channel, method, preset
        self.workdir = workdir
        self.meta = calibration.meta
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(src))
        except Exception as e:  # OpenVINO raises RuntimeError with multi-line text
            first = first_line(e)
            msg = f"{src} could not be read by OpenVINO ({first}); re-export it"
            raise ModelFileError(msg) from None
        ops = {op.get_friendly_name(): op for op in self.model.get_ordered_ops()}
        self._by_name = ops
        self._ops = [n for n, op in ops.items() if op.get_type_name() in WEIGHTED_OPS]
        self.layers = tuple(n.removesuffix(_SUFFIX) for n in self._ops)
        self.op_types = {n.removesuffix(_SUFFIX): ops[n].get_type_name() for n in self._ops}
        self._built: dict[tuple[str, ...], Path] = {}

    @property
    def fp32_path(self) -> Path:
        """The float model every candidate is compared against."""
        return self.src

    def calibrate(self) -> None:
        """NNCF collects statistics inside every ``build``; ahead of it, one calibration
        batch checks that the float model's outputs are finite (NNCF quantizes a model that
        outputs NaN without a word: ``check_finite``)."""
        from edgeres.preprocess import check_finite

        batch = next(iter(self.calibration.first(1)), None)
        if batch is None:
            return
        compiled = self.core.compile_model(self.model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        for value in compiled.create_infer_request().infer({0: batch}).values():
            check_finite(np.asarray(value), f"{self.src} on the calibration data")

    def check_names(self, names: Sequence[str]) -> None:
        """Raise for layer names that are not in the OpenVINO graph."""
        for name in names:
            self._op_name(name)

    def _op_name(self, layer: str) -> str:
        for candidate in (layer + _SUFFIX, layer):
            if candidate in self._by_name:
                return candidate
        hint = ", ".join(self.layers[:3])
        msg = f"no layer named {layer!r} in {self.src}; layer names look like {hint}"
        raise QuantizationError(msg)

    def build(self, floats: tuple[str, ...]) -> Path:
        """The int8 IR with ``floats`` left in float (cached per set of names)."""
        key = tuple(sorted(floats))
        if key not in self._built:
            path = self.workdir / f"int8-{len(self._built)}.xml"
            _save_ir(self._quantize(key), path, None)
            self._built[key] = path
        return self._built[key]

    def _quantize(self, floats: tuple[str, ...]) -> Any:
        import nncf
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            QuantizationParameters,
        )

        advanced = AdvancedQuantizationParameters(
            weights_quantization_params=QuantizationParameters(per_channel=self.per_channel))
        if self.method is not None:
            from nncf.quantization.range_estimator import RangeEstimatorParametersSet

            advanced.activations_range_estimator_params = getattr(
                RangeEstimatorParametersSet, _ESTIMATORS[self.method])
        scope = nncf.IgnoredScope(names=[self._op_name(n) for n in floats]) if floats else None
        stats = self.calibration.stats
        nncf_log = logging.getLogger("nncf")  # NNCF logs INFO to its own stdout handler
        level = nncf_log.level
        nncf_log.setLevel(logging.WARNING)
        try:
            with quiet():
                return nncf.quantize(
                    self.model.clone(), nncf_dataset(self.calibration),
                    preset=nncf.QuantizationPreset(self.preset),
                    target_device=nncf.TargetDevice.CPU, subset_size=stats.count,
                    ignored_scope=scope, advanced_parameters=advanced,
                )
        except nncf.ValidationError as e:
            msg = f"NNCF rejected the settings: {first_line(e)}"
            raise QuantizationError(msg) from None
        finally:
            nncf_log.setLevel(level)

    def load(self, path: Path, threads: int | None = None) -> Any:
        """A predictor for a candidate (or the fp32 model), through ``edgeres.runtime``."""
        from edgeres import runtime

        return runtime.load(path, backend="openvino", meta=self.meta, threads=threads)

    def compare_tensors(self, path: Path) -> dict[str, tuple[str, str]]:
        """Layer → (fp32 op, int8 op) whose outputs the per-layer error report compares.

        A layer is read after its bias: with several extra outputs, OpenVINO 2026.4's CPU
        plugin returned wrong values for int8 convolutions read before their bias (fused
        in place; measured -10 to +5 dB where each alone gave ~30 dB), right ones after it.
        """
        pairs = {}
        for name in self._ops:
            op = self._by_name[name]
            readers = [i.get_node() for i in op.output(0).get_target_inputs()]
            adds = [r.get_friendly_name() for r in readers if r.get_type_name() == "Add"]
            read = adds[0] if len(adds) == 1 else name  # other readers: ShapeOf for the bias
            pairs[name.removesuffix(_SUFFIX)] = (read, read)
        return pairs

    def tensor_runner(self, path: Path, names: Sequence[str]
                      ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        """A function running ``path`` on one batch and returning the named ops' outputs."""
        model = self.core.read_model(str(path))
        ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
        wanted = [n for n in dict.fromkeys(names) if n in ops]
        ports = model.add_outputs([ops[n].output(0) for n in wanted])
        keys = [port.get_any_name() for port in ports]  # names of the added Result ports
        compiled = self.core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()

        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            result = request.infer({0: x})
            return {name: np.array(result[key]) for name, key in zip(wanted, keys, strict=True)}

        return run

    def details(self) -> QuantDetails:
        """Types and options of the written models, for the report and the record."""
        return QuantDetails(
            format="OpenVINO IR (FakeQuantize)", activation_type="uint8/int8 (by sign)",
            activation_symmetric=self.preset == "performance", weight_type="int8",
            weight_symmetric=True, per_channel=self.per_channel, preset=self.preset,
            target_device="CPU",
        )

    def save(self, path: Path, dst: Path, meta: ModelMeta) -> None:
        """Write candidate ``path`` to ``dst`` (and its .bin) with ``meta`` in rt_info."""
        _save_ir(self.core.read_model(str(path)), dst, meta)


def _save_ir(model: Any, dst: Path, meta: ModelMeta | None) -> None:
    """Save ``model`` as ``dst`` (.xml) and its .bin; both appear together or not at all."""
    import openvino as ov

    if meta is not None:
        model.set_rt_info(meta.to_json(), [METADATA_KEY])
    with output_dir(dst) as parent, \
            tempfile.TemporaryDirectory(prefix=f".{dst.name}.", dir=parent) as tmp:
        xml = Path(tmp) / dst.name
        try:
            ov.save_model(model, str(xml), compress_to_fp16=False)  # fp32 meant, not fp16
        except RuntimeError as e:  # "basic_ios::clear: iostream error": a write that failed
            full = shutil.disk_usage(tmp).free < LOW_SPACE
            code = errno.ENOSPC if full else errno.EIO
            raise OSError(code, os.strerror(code) + f" (OpenVINO: {first_line(e)})") from None
        # The .bin first, the .xml (the file users name) last: a new .xml never exists
        # without its .bin.
        os.replace(xml.with_suffix(".bin"), dst.with_suffix(".bin"))
        os.replace(xml, dst)
