"""A small feed-forward convolutional network stored as a list of operations: the face detector and mesh models.

MediaPipe's face detector (BlazeFace, short range) and face mesh model are published as TFLite graphs under the
Apache-2.0 licence. ``training/convert_face_models.py`` turns each graph into this module: the operations become
``config.ops`` (a plain JSON list) and the constant tensors become parameters, saved with ``save_pretrained`` as
safetensors. Running the graph needs only torch: no TFLite runtime, batched frames, any device.

Each operation reads named tensors and writes one; tensor ``0`` is the input, ``(B, 3, H, W)`` float in ``[-1, 1]``
or ``[0, 1]`` as the model expects (``config.input_range``). Feature maps are ``(B, C, H, W)``; the operations
cover what these two graphs use: ``conv`` (grouped for depthwise), ``prelu``, ``relu``, ``add``, ``maxpool``,
``pad_channels``, ``flatten`` (reads channels-last, as TFLite's reshape does) and ``concat``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

OPS = ("conv", "prelu", "relu", "add", "maxpool", "pad_channels", "flatten", "concat")


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding (before, after) for one axis: the extra pixel goes after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvGraph(ModelMixin, ConfigMixin):
    """A convolutional graph run operation by operation (see the module docstring).

    Args:
        ops (`list[dict]`): the operations in order; each has ``op`` (one of :data:`OPS`), ``inputs`` (tensor
            names), ``output`` (a tensor name) and its settings (``stride``, ``padding`` "same"/"valid", ``groups``,
            ``pads``, ``kernel``, ``shape``, ``dim``).
        outputs (`list[str]`): the tensors returned, in order.
        input_size (`int`): the square input side in pixels.
        input_range (`list[float]`): the pixel range the network expects, e.g. ``[-1, 1]``.
    """

    @register_to_config
    def __init__(self, ops: list[dict[str, Any]], outputs: list[str], input_size: int = 128,
                 input_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        self.weights = nn.ParameterDict()
        for index, op in enumerate(ops):
            assert op["op"] in OPS, f"operation {index} is {op['op']!r}, not one of {OPS}"
            for name, shape in op.get("params", {}).items():
                self.weights[f"{index}_{name}"] = nn.Parameter(torch.zeros(shape), requires_grad=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the graph on ``images`` ``(B, 3, S, S)`` scaled to ``config.input_range``; returns ``config.outputs``."""
        size = self.config.input_size
        assert images.ndim == 4 and images.shape[1:] == (3, size, size), (
            f"expected images shaped (B, 3, {size}, {size}), got {tuple(images.shape)}"
        )
        tensors: dict[str, torch.Tensor] = {"input": images}
        for index, op in enumerate(self.config.ops):
            args = [tensors[name] for name in op["inputs"]]
            tensors[op["output"]] = self._run(index, op, args)
        return tuple(tensors[name] for name in self.config.outputs)

    def _param(self, index: int, name: str) -> torch.Tensor:
        return self.weights[f"{index}_{name}"]

    def _run(self, index: int, op: dict[str, Any], args: list[torch.Tensor]) -> torch.Tensor:
        kind = op["op"]
        x = args[0]
        if kind == "conv":
            weight = self._param(index, "weight")  # (out, in / groups, kh, kw)
            stride = op["stride"]
            if op["padding"] == "same":
                top, bottom = _same_padding(x.shape[2], weight.shape[2], stride)
                left, right = _same_padding(x.shape[3], weight.shape[3], stride)
                x = F.pad(x, (left, right, top, bottom))
            x = F.conv2d(x, weight, self._param(index, "bias"), stride=stride, groups=op["groups"])
            return F.relu(x) if op.get("activation") == "relu" else x
        if kind == "prelu":
            alpha = self._param(index, "alpha")  # (C,)
            return torch.where(x >= 0, x, x * alpha.view(1, -1, 1, 1))
        if kind == "relu":
            return F.relu(x)
        if kind == "add":
            out = x + args[1]
            return F.relu(out) if op.get("activation") == "relu" else out
        if kind == "maxpool":
            return F.max_pool2d(x, op["kernel"], op["stride"])
        if kind == "pad_channels":
            before, after = op["pads"]
            return F.pad(x, (0, 0, 0, 0, before, after))
        if kind == "flatten":  # TFLite tensors are channels-last: read them in that order
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], *op["shape"])
        return torch.cat(args, dim=op["dim"])  # concat
