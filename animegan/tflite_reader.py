"""The operators of a TFLite model and its constant tensors, dequantized to float32.

A recipe needs only the weights and the order of the operators that use them; nothing
here runs the model. The reader is the ``tflite`` package: the flatbuffer classes
generated from TensorFlow's ``schema.fbs`` (pure Python, about 2.5 MB with ``flatbuffers``),
rather than ``ai-edge-litert`` (about 60 MB of native interpreter plus protobuf), which
would only be used here to read bytes out of a file. It is in requirements.txt because
the default style is built with it on a fresh machine (a Space included), and imported
only when a recipe runs.

Dequantization follows the TFLite spec, ``real = scale * (q - zero_point)``, per channel
along ``quantized_dimension`` when a tensor has several scales, computed in float32 (the
scales are stored as float32; int32 biases are rounded to float32 first). float16
constants, which an fp16 model feeds through DEQUANTIZE operators, are widened to
float32, which is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_NUMPY_TYPES = {  # tflite.TensorType -> numpy dtype, for the types weights come in
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    9: np.int8,
}


class TFLiteFormatError(ValueError):
    """The file is not a TFLite model this reader understands."""


@dataclass(frozen=True)
class Operator:
    """One node of the graph: its builtin name ("CONV_2D", ...) and tensor indices."""

    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


class TFLiteModel:
    """The first subgraph of a ``.tflite`` file, in the order its operators run."""

    def __init__(self, data: bytes) -> None:
        try:
            import tflite
            from tflite.BuiltinOperator import BuiltinOperator
        except ImportError as exc:  # the caller turns this into a user-facing error
            raise ModuleNotFoundError(
                "reading a TFLite model needs the Python package 'tflite' (pip install tflite)"
            ) from exc
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise TFLiteFormatError("not a TFLite model (no TFL3 identifier)")
        try:
            self._model = tflite.Model.GetRootAsModel(data, 0)
            self._graph = self._model.Subgraphs(0)
            names = {code: name for name, code in vars(BuiltinOperator).items() if name.isupper()}
            self.operators = [self._operator(i, names) for i in range(self._graph.OperatorsLength())]
        except (IndexError, TypeError, ValueError, AttributeError) as exc:
            raise TFLiteFormatError(f"damaged TFLite model ({type(exc).__name__})") from exc
        self._producers = {out: op for op in self.operators for out in op.outputs}

    def _operator(self, index: int, names: dict[int, str]) -> Operator:
        op = self._graph.Operators(index)
        code = self._model.OperatorCodes(op.OpcodeIndex())
        # Files from schema version 3a on keep codes above 127 in BuiltinCode only.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        return Operator(
            names.get(builtin, f"UNKNOWN_{builtin}"),
            tuple(int(i) for i in op.InputsAsNumpy()),
            tuple(int(i) for i in op.OutputsAsNumpy()),
        )

    def name(self, index: int) -> str:
        return self._graph.Tensors(index).Name().decode()

    def shape(self, index: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self._graph.Tensors(index).ShapeAsNumpy())

    def is_constant(self, index: int) -> bool:
        """Whether the tensor holds data in the file, directly or through a DEQUANTIZE."""
        return self._raw(index) is not None or self._dequantized_input(index) is not None

    def constant(self, index: int) -> np.ndarray:
        """The tensor's data as float32 (dequantized), in TFLite's own layout."""
        raw = self._raw(index)
        if raw is None:
            source = self._dequantized_input(index)
            if source is None:
                raise TFLiteFormatError(f"tensor {self.name(index)!r} is not a constant")
            return self.constant(source)
        quant = self._graph.Tensors(index).Quantization()
        if raw.dtype.kind == "f":
            return raw.astype(np.float32)
        if quant is None or quant.ScaleLength() == 0:
            raise TFLiteFormatError(f"integer tensor {self.name(index)!r} has no scale")
        shape = [1] * raw.ndim
        if quant.ScaleLength() > 1:
            shape[quant.QuantizedDimension()] = -1
        scale = quant.ScaleAsNumpy().astype(np.float32).reshape(shape)
        zero_point = (
            quant.ZeroPointAsNumpy().astype(np.float32).reshape(shape)
            if quant.ZeroPointLength()
            else np.float32(0)
        )
        return (raw.astype(np.float32) - zero_point) * scale

    def _raw(self, index: int) -> np.ndarray | None:
        tensor = self._graph.Tensors(index)
        buffer = self._model.Buffers(tensor.Buffer())
        if buffer is None or buffer.DataLength() == 0:
            return None
        dtype = _NUMPY_TYPES.get(tensor.Type())
        if dtype is None:
            raise TFLiteFormatError(f"tensor {self.name(index)!r} has unsupported type {tensor.Type()}")
        return buffer.DataAsNumpy().view(dtype).reshape(self.shape(index))

    def _dequantized_input(self, index: int) -> int | None:
        producer = self._producers.get(index)
        if producer is None or producer.kind != "DEQUANTIZE":
            return None
        (source,) = producer.inputs
        return source if self._raw(source) is not None else None
