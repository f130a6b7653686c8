"""One bundle stage's ONNX network on onnxruntime, checked against its manifest entry.

The network's input is ``(batch, 1, z, y, x)`` float32 (normalised intensities)
and its output ``(batch, channels, z, y, x)`` logits; :class:`Network` turns a
batch of patches into the probability of the stage's channel.

Execution providers: ``cuda`` needs onnxruntime's CUDAExecutionProvider,
``auto`` takes it when present, else the CPU. Sessions run sequentially
(``ORT_SEQUENTIAL``) with ``threads`` intra-op threads; on CPU the result is
then deterministic. On CUDA, cuDNN's algorithm search is set to its default
heuristic (no exhaustive benchmarking), which keeps runs repeatable in
practice, but cuDNN itself does not guarantee bit-identical results.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import onnxruntime

from ..errors import InputError
from .bundle import Stage

DEVICES = ("auto", "cpu", "cuda")


def providers_for(device: str) -> List:
    """onnxruntime execution providers for ``device`` (auto, cpu or cuda)."""
    if device not in DEVICES:
        raise InputError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    available = onnxruntime.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise InputError(
            "--device cuda was asked for, but this onnxruntime has no CUDA execution provider "
            f"(it has {', '.join(available)}). Install onnxruntime-gpu with a matching CUDA, or use --device cpu.")
    if device in ("cuda", "auto") and has_cuda:
        return [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "DEFAULT"}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads: Optional[int]) -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(threads or 0)  # 0: onnxruntime picks (physical cores)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: warnings about unused initialisers are noise here
    return options


class Network:
    """A stage's verified ONNX model; call it on (B, 1, z, y, x) to get (B, z, y, x) probabilities."""

    def __init__(self, stage: Stage, device: str = "auto", threads: Optional[int] = None) -> None:
        self.stage = stage
        data = stage.read_model()  # verifies the sha256 before onnxruntime sees a byte
        try:
            self.session = onnxruntime.InferenceSession(data, session_options(threads), providers=providers_for(device))
        except InputError:
            raise
        except Exception as error:  # onnxruntime raises its own exception types for bad graphs
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InputError(f"{stage.model_path} ({stage.name}) cannot be loaded by onnxruntime: {first}. "
                             "Re-export the model to ONNX (opset 17 or later).") from None
        self._check_signature()
        self.input_name = self.session.get_inputs()[0].name

    def _problem(self, what: str) -> InputError:
        return InputError(f"{self.stage.model_path} ({self.stage.name}) does not fit its manifest entry: {what}. "
                          "Export the model with input (batch, 1, z, y, x) and output (batch, channels, z, y, x), "
                          "or fix patch_size / output.channels in manifest.json.")

    def _check_signature(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise self._problem(f"it has {len(inputs)} inputs, not 1")
        shape_in, shape_out = list(inputs[0].shape), list(outputs[0].shape)
        if len(shape_in) != 5:
            raise self._problem(f"its input has rank {len(shape_in)} ({shape_in}), not 5")
        if len(shape_out) != 5:
            raise self._problem(f"its output has rank {len(shape_out)} ({shape_out}), not 5")
        if isinstance(shape_in[1], int) and shape_in[1] != 1:
            raise self._problem(f"its input has {shape_in[1]} channels; TwinTrack feeds 1 (the CT)")
        if isinstance(shape_out[1], int) and shape_out[1] != self.stage.channels:
            raise self._problem(f"its output has {shape_out[1]} channels, the manifest says {self.stage.channels}")
        for name, shape in (("input", shape_in), ("output", shape_out)):
            fixed = [(d, p) for d, p in zip(shape[2:], self.stage.patch_size) if isinstance(d, int)]
            if any(d != p for d, p in fixed):
                raise self._problem(f"its {name} patch is {shape[2:]} (z, y, x), the manifest's patch_size is "
                                    f"{list(self.stage.patch_size)}")
        if inputs[0].type != "tensor(float)":
            raise self._problem(f"its input is {inputs[0].type}, not float32")

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """The network's raw output (B, channels, z, y, x) for a batch (B, 1, z, y, x)."""
        logits = self.session.run(None, {self.input_name: batch})[0]
        if logits.shape[1] != self.stage.channels or logits.shape[2:] != batch.shape[2:]:
            raise self._problem(f"it returned shape {list(logits.shape)} for a batch of {list(batch.shape)}")
        return logits

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return channel_probability(self.logits(batch), self.stage.channel, self.stage.activation)


def channel_probabilities(logits: np.ndarray, activation: str) -> np.ndarray:
    """Every channel's probability from logits (B, C, z, y, x), float32 (B, C, z, y, x)."""
    with np.errstate(over="ignore"):  # exp overflow to inf gives the correct limit, 0
        if activation == "sigmoid":
            return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32, copy=False)
        shifted = logits - logits.max(axis=1, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=1, keepdims=True)
        return shifted.astype(np.float32, copy=False)


def channel_probability(logits: np.ndarray, channel: int, activation: str) -> np.ndarray:
    """Probability of ``channel`` from logits (B, C, z, y, x), float32 (B, z, y, x)."""
    with np.errstate(over="ignore"):  # exp overflow to inf gives the correct limit, 0
        return _channel_probability(logits, channel, activation)


def _channel_probability(logits: np.ndarray, channel: int, activation: str) -> np.ndarray:
    if activation == "sigmoid":
        return (1.0 / (1.0 + np.exp(-logits[:, channel]))).astype(np.float32, copy=False)
    if logits.shape[1] == 2:  # two-class softmax is a sigmoid of the logit difference: no full exp
        difference = logits[:, 1 - channel] - logits[:, channel]
        return (1.0 / (1.0 + np.exp(difference))).astype(np.float32, copy=False)
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    return (shifted[:, channel] / shifted.sum(axis=1)).astype(np.float32, copy=False)
