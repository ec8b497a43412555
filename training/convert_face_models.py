"""Convert MediaPipe's face detector and face mesh TFLite graphs into :class:`pipeline.models.conv_graph.ConvGraph`.

The models (Apache-2.0) ship inside the ``mediapipe`` 0.10.21 wheel, which this project does not install (it
needs numpy < 2 and a second OpenCV). Take the two files from the wheel and convert them once::

    pip download --no-deps mediapipe==0.10.21 -d /tmp/mp && cd /tmp/mp && unzip -o mediapipe-0.10.21-*.whl \
        'mediapipe/modules/face_detection/face_detection_short_range.tflite' \
        'mediapipe/modules/face_landmark/face_landmark.tflite'
    pip install tflite==2.18.0     # the TFLite flatbuffer schema (requirements-dev.txt)
    M=/tmp/mp/mediapipe/modules
    python training/convert_face_models.py --detector $M/face_detection/face_detection_short_range.tflite \
        --mesh $M/face_landmark/face_landmark.tflite

The converted models are written to ``pipeline/assets/face_detector`` and ``pipeline/assets/face_mesh``. If
``ai-edge-litert`` is installed, each conversion is checked against the TFLite interpreter on random inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.models.conv_graph import ConvGraph

ASSETS = Path(__file__).resolve().parents[1] / "pipeline" / "assets"


def _tensor_value(model, graph, index: int) -> np.ndarray | None:
    """The constant data of a tensor (float16 constants are returned as float32), or ``None`` for activations."""
    import tflite

    tensor = graph.Tensors(index)
    buffer = model.Buffers(tensor.Buffer())
    if buffer is None or buffer.DataLength() == 0:
        return None
    dtype = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
             tflite.TensorType.INT32: np.int32}[tensor.Type()]
    return np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=dtype).reshape(tensor.ShapeAsNumpy()).astype(
        np.float32 if dtype != np.int32 else np.int32)


def read_graph(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse a TFLite file into a ConvGraph config and its parameters."""
    import tflite

    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    padding_name = {tflite.Padding.SAME: "same", tflite.Padding.VALID: "valid"}
    constants: dict[int, np.ndarray] = {}
    tensor_name: dict[int, str] = {graph.Inputs(0): "input"}
    ops: list[dict[str, Any]] = []
    params: dict[str, np.ndarray] = {}

    def name_of(index: int) -> str:
        return tensor_name.setdefault(index, f"t{index}")

    def fused_relu(options_class, op) -> str | None:
        options = options_class()
        options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
        act = options.FusedActivationFunction()
        assert act in (tflite.ActivationFunctionType.NONE, tflite.ActivationFunctionType.RELU), f"activation {act}"
        return "relu" if act == tflite.ActivationFunctionType.RELU else None

    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        inputs = [int(j) for j in op.InputsAsNumpy()]
        out = int(op.OutputsAsNumpy()[0])
        values = [(_tensor_value(model, graph, j) if j >= 0 else None) for j in inputs]
        if kind == "DEQUANTIZE":  # float16 weights: fold into a float32 constant
            constants[out] = values[0]
            continue
        values = [constants.get(j, v) for j, v in zip(inputs, values, strict=False)]
        index = len(ops)
        entry: dict[str, Any] = {"inputs": [], "output": name_of(out)}
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            weight, bias = values[1], values[2]
            if kind == "CONV_2D":
                options_class = tflite.Conv2DOptions
                torch_weight = weight.transpose(0, 3, 1, 2)  # (out, kh, kw, in) -> (out, in, kh, kw)
                groups = 1
            else:
                options_class = tflite.DepthwiseConv2DOptions
                torch_weight = weight.transpose(3, 0, 1, 2)  # (1, kh, kw, C) -> (C, 1, kh, kw)
                groups = torch_weight.shape[0]
            options = options_class()
            options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            assert options.StrideH() == options.StrideW(), "square strides only"
            entry.update(op="conv", stride=options.StrideH(), padding=padding_name[options.Padding()], groups=groups,
                         activation=fused_relu(options_class, op))
            params[f"{index}_weight"], params[f"{index}_bias"] = torch_weight, bias
        elif kind == "PRELU":
            entry.update(op="prelu")
            params[f"{index}_alpha"] = values[1].reshape(-1)
        elif kind == "RELU":
            entry.update(op="relu")
        elif kind == "ADD":
            entry.update(op="add", activation=fused_relu(tflite.AddOptions, op))
        elif kind == "MAX_POOL_2D":
            options = tflite.Pool2DOptions()
            options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            assert options.FilterHeight() == options.StrideH() == 2, "2x2 pooling only"
            entry.update(op="maxpool", kernel=2, stride=2)
        elif kind == "PAD":
            pads = values[1]
            assert not pads[:3].any(), f"only channel padding is supported, got {pads.tolist()}"
            entry.update(op="pad_channels", pads=[int(pads[3, 0]), int(pads[3, 1])])
        elif kind == "RESHAPE":
            shape = graph.Tensors(out).ShapeAsNumpy().tolist()
            entry.update(op="flatten", shape=shape[1:])
        elif kind == "CONCATENATION":
            options = tflite.ConcatenationOptions()
            options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            entry.update(op="concat", dim=int(options.Axis()))
        else:
            raise ValueError(f"operation {kind} is not supported by ConvGraph")
        # activations, not constants
        entry["inputs"] = [name_of(j) for j, v in zip(inputs, values, strict=True) if v is None]
        entry["params"] = {k.split("_", 1)[1]: list(v.shape) for k, v in params.items() if k.startswith(f"{index}_")}
        ops.append(entry)
    outputs = [name_of(graph.Outputs(i)) for i in range(graph.OutputsLength())]
    size = int(graph.Tensors(graph.Inputs(0)).ShapeAsNumpy()[1])
    return {"ops": ops, "outputs": outputs, "input_size": size}, params


def convert(path: Path, out_dir: Path, input_range: tuple[float, float]) -> ConvGraph:
    config, params = read_graph(path)
    model = ConvGraph(**config, input_range=input_range)
    state = {f"weights.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in params.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    check_against_tflite(path, model)
    model.save_pretrained(out_dir)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (out_dir / "SOURCE.json").write_text(json.dumps({
        "converted_from": path.name, "sha256": digest, "origin": "mediapipe==0.10.21 wheel (PyPI), "
        f"mediapipe/modules/.../{path.name}", "licence": "Apache-2.0 (Google MediaPipe)",
        "command": "python training/convert_face_models.py --detector ... --mesh ...",
    }, indent=2) + "\n")
    return model


def check_against_tflite(path: Path, model: ConvGraph) -> None:
    """Compare with the TFLite interpreter on random inputs when ``ai-edge-litert`` is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        print("ai-edge-litert is not installed: conversion not checked against TFLite")
        return
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    size = model.config.input_size
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    expected = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    with torch.no_grad():
        got = model(torch.from_numpy(image).permute(0, 3, 1, 2))
    by_size = {e.size: e for e in expected}
    for tensor in got:
        reference = by_size[tensor.numel()].reshape(-1)
        value = tensor.permute(0, *range(2, tensor.ndim), 1).reshape(-1).numpy() if tensor.ndim == 4 else \
            tensor.reshape(-1).numpy()
        error = float(np.abs(value - reference).max() / (np.abs(reference).max() + 1e-9))
        print(f"{path.name}: output of {tensor.numel()} values, max relative difference to TFLite {error:.2e}")
        assert error < 1e-3, f"conversion of {path.name} differs from TFLite by {error}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", type=Path, required=True, help="face_detection_short_range.tflite")
    parser.add_argument("--mesh", type=Path, required=True, help="face_landmark.tflite")
    parser.add_argument("--out", type=Path, default=ASSETS)
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    convert(args.detector, args.out / "face_detector", (-1.0, 1.0))
    convert(args.mesh, args.out / "face_mesh", (0.0, 1.0))


if __name__ == "__main__":
    main(parse_args())
