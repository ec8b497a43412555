"""training/convert_whisper_encoder.py: the first layers of a Whisper encoder from CTranslate2's model.bin or from a
transformers Whisper model, as a transformers WhisperEncoder that computes what the source's first layers compute."""

from __future__ import annotations

import copy
import json
import struct

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from training.convert_whisper_encoder import encoder_from_ct2, main, read_ct2_variables

TINY = {"d_model": 16, "encoder_layers": 3, "encoder_attention_heads": 2, "encoder_ffn_dim": 32, "num_mel_bins": 80,
        "max_source_positions": 1500, "decoder_layers": 1, "decoder_attention_heads": 2, "decoder_ffn_dim": 32,
        "vocab_size": 64, "max_target_positions": 16, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
        "decoder_start_token_id": 3}


def _text(value: str) -> bytes:
    raw = value.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_ct2(path, variables: dict[str, np.ndarray], spec: str = "WhisperSpec", version: int = 6) -> None:
    """A model.bin as CTranslate2 writes it: version, spec name and revision, then named arrays (float16 here, as
    faster-whisper's conversions are), then aliases."""
    codes = {np.dtype(np.float16): 4, np.dtype(np.float32): 0, np.dtype(np.int16): 2}
    out = struct.pack("<I", version) + _text(spec) + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    for name, value in variables.items():
        out += _text(name) + struct.pack("<B", value.ndim) + b"".join(struct.pack("<I", d) for d in value.shape)
        out += struct.pack("<BI", codes[value.dtype], value.nbytes) + value.tobytes()
    path.write_bytes(out + struct.pack("<I", 0))


def _as_ct2(encoder: WhisperEncoder) -> dict[str, np.ndarray]:
    """``encoder``'s weights in CTranslate2's Whisper layout (query, key and value fused, a zero key bias)."""
    def half(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy().astype(np.float16)

    out = {"encoder/conv1/weight": half(encoder.conv1.weight), "encoder/conv1/bias": half(encoder.conv1.bias),
           "encoder/conv2/weight": half(encoder.conv2.weight), "encoder/conv2/bias": half(encoder.conv2.bias),
           "encoder/position_encodings/encodings": half(encoder.embed_positions.weight),
           "encoder/layer_norm/gamma": half(encoder.layer_norm.weight),
           "encoder/layer_norm/beta": half(encoder.layer_norm.bias),
           "encoder/num_heads": np.array(encoder.config.encoder_attention_heads, dtype=np.int16),
           "decoder/embeddings/weight": np.zeros((4, 16), np.float16)}
    for i, layer in enumerate(encoder.layers):
        a, p = layer.self_attn, f"encoder/layer_{i}/"
        out |= {
            p + "self_attention/linear_0/weight": half(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])),
            p + "self_attention/linear_0/bias": half(torch.cat([a.q_proj.bias, torch.zeros(16), a.v_proj.bias])),
            p + "self_attention/linear_1/weight": half(a.out_proj.weight),
            p + "self_attention/linear_1/bias": half(a.out_proj.bias),
            p + "self_attention/layer_norm/gamma": half(layer.self_attn_layer_norm.weight),
            p + "self_attention/layer_norm/beta": half(layer.self_attn_layer_norm.bias),
            p + "ffn/linear_0/weight": half(layer.fc1.weight), p + "ffn/linear_0/bias": half(layer.fc1.bias),
            p + "ffn/linear_1/weight": half(layer.fc2.weight), p + "ffn/linear_1/bias": half(layer.fc2.bias),
            p + "ffn/layer_norm/gamma": half(layer.final_layer_norm.weight),
            p + "ffn/layer_norm/beta": half(layer.final_layer_norm.bias),
        }
    return out


def _hidden(encoder: WhisperEncoder, mel: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        return encoder(mel, output_hidden_states=True).hidden_states


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    torch.manual_seed(0)
    model = WhisperModel(WhisperConfig(**TINY)).eval()
    folder = tmp_path_factory.mktemp("whisper")
    model.save_pretrained(folder)
    return model, folder


def test_ct2_weights_become_an_encoder_that_computes_the_same(whisper, tmp_path):
    model, _ = whisper
    source = copy.deepcopy(model.get_encoder()).half().float()  # the float16 weights CTranslate2's file holds
    _write_ct2(tmp_path / "model.bin", _as_ct2(source))
    variables = read_ct2_variables(tmp_path / "model.bin")
    assert variables["encoder/conv2/weight"].shape == (16, 16, 3) and "decoder/embeddings/weight" in variables
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(1))
    full = encoder_from_ct2(tmp_path, layers=10)
    assert full.config.encoder_layers == 3
    assert torch.allclose(_hidden(full, mel)[-1], _hidden(source, mel)[-1], atol=1e-5)
    first = encoder_from_ct2(tmp_path, layers=2)
    assert len(first.layers) == 2 and torch.allclose(_hidden(first, mel)[1], _hidden(source, mel)[1], atol=1e-5)


def test_ct2_files_it_cannot_read_are_refused_in_one_line(whisper, tmp_path):
    model, _ = whisper
    _write_ct2(tmp_path / "model.bin", _as_ct2(model.get_encoder()), spec="TransformerSpec")
    with pytest.raises(SystemExit, match="not a Whisper model"):
        read_ct2_variables(tmp_path / "model.bin")
    _write_ct2(tmp_path / "model.bin", _as_ct2(model.get_encoder()), version=2)
    with pytest.raises(SystemExit, match="format 2"):
        read_ct2_variables(tmp_path / "model.bin")


def test_hub_model_first_layers_from_the_command_line(whisper, tmp_path):
    """--hub-model takes a transformers Whisper (a Hub id, or here a local folder) and keeps its first layers; the
    folder records its source and loads as a WhisperEncoder from safetensors."""
    model, folder = whisper
    main(["--hub-model", str(folder), "--layers", "2", "--out", str(tmp_path / "out")])
    encoder = WhisperEncoder.from_pretrained(tmp_path / "out", use_safetensors=True).eval()
    assert encoder.config.encoder_layers == 2 and len(encoder.layers) == 2
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(_hidden(encoder, mel)[1], _hidden(model.get_encoder(), mel)[1], atol=1e-5)
    record = json.loads((tmp_path / "out" / "source.json").read_text())
    assert record["format"] == "hub" and record["layers"] == 2 and "--hub-model" in record["command"]
    with pytest.raises(SystemExit):
        main(["--hub-model", str(folder), "--layers", "0", "--out", str(tmp_path / "bad")])
