"""Weights load from safetensors only; nothing in the code base unpickles a checkpoint without ``weights_only``.

A pickle can run any code when it is loaded, so a downloaded or swapped checkpoint must never be unpickled:
``save_pretrained`` writes safetensors, ``pipeline.loading.load_pipeline`` passes ``use_safetensors=True`` (diffusers
then refuses a folder that only has ``.bin`` files), and every ``torch.load`` passes ``weights_only=True``.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
#: Where the project's Python lives (tests excluded: they may build pickles on purpose, as this file does).
SOURCES = [ROOT / "pipeline", ROOT / "training", ROOT / "bench", ROOT / "app.py"]
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".msgpack", ".h5", ".npz"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny TalkingFacePipeline saved as diffusers does it."""
    from diffusers import DDIMScheduler

    from pipeline import LandmarkDenoiser, TalkingFacePipeline

    torch.manual_seed(0)
    tiny = TalkingFacePipeline(
        landmark_denoiser=LandmarkDenoiser(window=16, audio_dim=320, d_model=32, num_layers=1, num_heads=2),
        scheduler=DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                prediction_type="sample", clip_sample=False),
    )
    folder = tmp_path_factory.mktemp("saved") / "tiny"
    tiny.save_pretrained(folder)
    return folder


def _weights(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def _pickled_copy(saved: Path, target: Path, payload=None) -> Path:
    """``saved`` with every safetensors file replaced by ``torch.save`` of its state dict (or of ``payload``) as
    ``diffusion_pytorch_model.bin``, as a tampered or old-style checkpoint would be."""
    from safetensors.torch import load_file

    shutil.copytree(saved, target)
    for weights in _weights(target):
        state = load_file(weights) if payload is None else payload
        torch.save(state, weights.parent / "diffusion_pytorch_model.bin")
        weights.unlink()
    assert _weights(target) and all(p.suffix == ".bin" for p in _weights(target))
    return target


class _Payload:
    """Unpickling this creates a file: the stand-in for arbitrary code in a hostile checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_saved_weights_are_safetensors_only(saved):
    weights = _weights(saved)
    assert weights, "save_pretrained wrote no weights"
    assert all(p.suffix == ".safetensors" for p in weights), [str(p.relative_to(saved)) for p in weights]


def test_load_pipeline_asks_diffusers_for_safetensors(saved, monkeypatch):
    from pipeline.loading import load_pipeline
    from pipeline.pipeline_talking_face import TalkingFacePipeline

    seen = {}

    class Stop(Exception):
        pass

    def spy(cls, *args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(TalkingFacePipeline, "from_pretrained", classmethod(spy))
    with pytest.raises(Stop):
        load_pipeline(saved)
    assert seen.get("use_safetensors") is True, f"pipeline/loading.py calls from_pretrained with {seen}"


def test_pickled_weights_are_refused(saved, tmp_path):
    from pipeline.loading import load_pipeline
    from pipeline.pipeline_talking_face import TalkingFacePipeline

    pickled = _pickled_copy(saved, tmp_path / "pickled")
    with pytest.raises(OSError, match="safetensors"):
        TalkingFacePipeline.from_pretrained(str(pickled), use_safetensors=True)
    with pytest.raises(OSError, match="safetensors"):
        load_pipeline(pickled)


def test_pickles_are_refused_even_without_the_flag(saved, tmp_path):
    """Why TalkingFacePipeline.from_pretrained insists on safetensors: left to itself, diffusers 0.4x quietly loads
    the .bin (through torch.load(weights_only=True), which at least refuses pickled code, see below)."""
    from pipeline.pipeline_talking_face import TalkingFacePipeline

    pickled = _pickled_copy(saved, tmp_path / "pickled")
    with pytest.raises(OSError, match="safetensors"):
        TalkingFacePipeline.from_pretrained(str(pickled))
    with pytest.raises(ValueError, match="safetensors weights only"):
        TalkingFacePipeline.from_pretrained(str(saved), use_safetensors=False)
    diffusers_loader = super(TalkingFacePipeline, TalkingFacePipeline).from_pretrained  # without our checks
    fallback = diffusers_loader(str(pickled))
    original = TalkingFacePipeline.from_pretrained(str(saved))
    for (name, a), (_, b) in zip(fallback.landmark_denoiser.state_dict().items(),
                                 original.landmark_denoiser.state_dict().items(), strict=False):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("entry", [["planted_module", "Payload"], ["subprocess", "Popen"], ["os", "system"],
                                   ["diffusers", "AutoencoderKL"], ["pipeline.models.face_renderer",
                                                                    "LandmarkFaceRenderer"], ["diffusers"]])
def test_a_crafted_model_index_is_refused_before_any_import(saved, tmp_path, monkeypatch, entry):
    """model_index.json may name only this pipeline's components; diffusers would import any module it names (here
    a module planted on the path that leaves a marker when imported)."""
    import json
    import shutil

    from pipeline.loading import load_pipeline
    from pipeline.pipeline_talking_face import TalkingFacePipeline

    marker = tmp_path / "imported"
    (tmp_path / "planted_module.py").write_text(f"open({str(marker)!r}, 'w').close()\nPayload = object\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    crafted = tmp_path / "crafted"
    shutil.copytree(saved, crafted)
    index = json.loads((crafted / "model_index.json").read_text())
    index["scheduler" if entry == ["diffusers", "AutoencoderKL"] else "landmark_denoiser"] = entry
    (crafted / "model_index.json").write_text(json.dumps(index))
    for load in (lambda: TalkingFacePipeline.from_pretrained(str(crafted)), lambda: load_pipeline(crafted)):
        with pytest.raises(RuntimeError, match="refusing to load it"):
            load()
    assert not marker.exists()


def test_a_hostile_pickle_never_runs(saved, tmp_path):
    from pipeline.loading import load_pipeline
    from pipeline.pipeline_talking_face import TalkingFacePipeline

    marker = tmp_path / "pwned"
    hostile = _pickled_copy(saved, tmp_path / "hostile", payload={"weight": _Payload(marker)})
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do; the point is the marker below
        load_pipeline(hostile)
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - and diffusers' own fallback uses weights_only=True
        TalkingFacePipeline.from_pretrained(str(hostile))
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------------
# torch.load everywhere


def _python_files() -> list[Path]:
    files = []
    for source in SOURCES:
        files += [source] if source.is_file() else sorted(source.rglob("*.py"))
    return files


def _torch_load_calls(tree: ast.AST) -> list[ast.Call]:
    """Calls of torch.load however torch or load was imported (``import torch as th``, ``from torch import
    load as tl``)."""
    modules, functions = {"torch"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            functions |= {a.asname or a.name for a in node.names if a.name == "load"}
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr == "load" and isinstance(func.value, ast.Name)
                and func.value.id in modules) or (isinstance(func, ast.Name) and func.id in functions):
            calls.append(node)
    return calls


def _safe(call: ast.Call) -> bool:
    return any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
               for k in call.keywords)


def _calls_in_text(text: str) -> list[str]:
    """Fallback for a file that does not parse (being edited): the text of each ``torch.load(...)`` call."""
    calls = []
    for match in re.finditer(r"\btorch\.load\s*\(", text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append(text[match.start():i])
    return calls


def test_every_torch_load_uses_weights_only():
    files = _python_files()
    assert any(f.name == "loading.py" for f in files) and (ROOT / "app.py") in files
    unsafe, found = [], 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            tree = ast.parse(text, filename=str(path))
        except SyntaxError:
            for call in _calls_in_text(text):
                found += 1
                if not re.search(r"weights_only\s*=\s*True\b", call):
                    unsafe.append(f"{path.relative_to(ROOT)}: {call[:80]}")
            continue
        for call in _torch_load_calls(tree):
            found += 1
            if not _safe(call):
                unsafe.append(f"{path.relative_to(ROOT)}:{call.lineno}: {ast.unparse(call)[:80]}")
    assert not unsafe, "torch.load without weights_only=True:\n" + "\n".join(unsafe)
    assert found >= 1  # bench/quality.py loads SyncNet's weights: the scan does see calls


def test_the_scan_catches_unsafe_forms():
    """The checker itself: each of these is reported."""
    for source in ["import torch\ntorch.load('x')", "import torch as th\nth.load('x', weights_only=False)",
                   "from torch import load\nload('x')", "from torch import load as tl\ntl('x', map_location='cpu')"]:
        calls = _torch_load_calls(ast.parse(source))
        assert len(calls) == 1 and not _safe(calls[0]), source
    ok = _torch_load_calls(ast.parse("import torch\ntorch.load('x', map_location='cpu', weights_only=True)"))
    assert len(ok) == 1 and _safe(ok[0])
    assert _calls_in_text("x = torch.load(f(a), weights_only=True) +") == ["torch.load(f(a), weights_only=True)"]


def test_runtime_code_never_unpickles():
    """pipeline/ and app.py (what runs on user requests) use no pickle, numpy allow_pickle or joblib at all."""
    pattern = re.compile(r"\bpickle\.loads?\(|allow_pickle\s*=\s*True|\bjoblib\.load\(|\bdill\.loads?\(")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in _python_files() if p.is_relative_to(ROOT / "pipeline")
            or p == ROOT / "app.py" for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
            if pattern.search(line)]
    assert not hits, hits
