"""Distributed runs as a user launches them: ``accelerate launch --multi_gpu --num_processes 2`` on this CPU-only
machine (two processes, gloo).

Training (both scripts, tiny models on tiny data made here): after a few steps the two replicas hold the same
weights, which differ from the start (a loss computed through the unwrapped model skips DDP's gradient all-reduce,
and with per-process batches the replicas then drift apart); the learning-rate schedule ends at ``max_steps`` on two
processes too; loss and learning rate reach TensorBoard; only the newest saved states are kept. Batch generation: every
item is made exactly once, by one of the processes, failures are listed once, and the output folder holds the videos
and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from pipeline.audio import make_audio_features
from pipeline.models import LandmarkDenoiser
from tests.conftest import get_dummy_components, speechlike

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).with_name("accelerate")
MEAN_FACE = np.asarray(json.loads((REPO / "pipeline/assets/mean_face.json").read_text())["points"], np.float32)

#: Runs a training script's ``main`` in each launched process and saves that process's trained weights.
DRIVER = """
import importlib, sys
from pathlib import Path
from accelerate import PartialState
from safetensors.torch import save_file
script = importlib.import_module("training." + sys.argv[1])
model = script.main(script.parse_args(sys.argv[3:]))
state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, str(Path(sys.argv[2]) / f"rank{PartialState().process_index}.safetensors"))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args: str, processes: int = 2, timeout: float = 300, code: int = 0) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes N ...`` from the repository root, expected to exit with ``code``
    (on a host without GPUs the processes join as CPU processes: :func:`pipeline.distributed.launched_on_cpu`)."""
    command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1",
               "--main_process_port", str(_free_port()), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == code, done.stdout[-3000:] + done.stderr[-6000:]
    return done


def _train_config(tmp: Path, data: Path, **sections) -> Path:
    config = {"seed": 0, "output_dir": str(tmp / "out"), "final_dir": str(tmp / "final"),
              "data": [{"path": str(data), "weight": 1.0}], **sections}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


TRAIN = {"max_steps": 4, "batch_size": 4, "learning_rate": 1.0e-3, "weight_decay": 0.0, "warmup_steps": 1,
         "gradient_accumulation_steps": 1, "max_grad_norm": 1.0, "mixed_precision": "no", "ema_decay": 0.9,
         "checkpointing_steps": 2, "checkpoints_total_limit": 1, "log_every": 2, "num_threads": 1}


def _run_training(tmp: Path, script: str, config: Path, *extra: str) -> tuple[dict, dict]:
    (tmp / "weights").mkdir()
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    launch(str(driver), script, str(tmp / "weights"), "--config", str(config), *extra)
    return load_file(tmp / "weights" / "rank0.safetensors"), load_file(tmp / "weights" / "rank1.safetensors")


def _scalars(logs: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs))
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def _check_run(tmp: Path, name: str, model_folder: str, start: dict, replicas: tuple[dict, dict]) -> None:
    first, second = replicas
    assert first.keys() == second.keys() == start.keys()
    unequal = [k for k in first if not torch.equal(first[k], second[k])]
    assert not unequal, f"the replicas differ after training in {len(unequal)} tensors, e.g. {unequal[:3]}"
    assert any(not torch.equal(first[k], start[k]) for k in first), "training did not change the weights"
    saved = sorted(p.name for p in (tmp / "out" / "checkpoints").iterdir())
    assert saved == ["checkpoint_1"]  # saved at steps 2 and 4; the limit of one kept the newest
    info = json.loads((tmp / "final" / model_folder / "training_info.json").read_text())
    assert info["steps"] == 4 and info["processes"] == 2
    lr = _scalars(tmp / "out" / "logs" / name, "lr")
    assert len(lr) == 4 and lr[0] == pytest.approx(1e-3) and lr[-1] < 1e-6  # the cosine ends at max_steps
    assert len(_scalars(tmp / "out" / "logs" / name, "loss")) == 4


def test_two_process_landmark_training_stays_in_sync(tmp_path):
    featurizer = make_audio_features(None)
    rng = np.random.default_rng(0)
    for i in range(4):  # 2 s utterances, 50 frames at 25 fps, mouth moving with a random smooth signal
        motion = np.zeros((50, 68, 2), np.float32)
        motion[:, 48:68, 1] = np.cumsum(rng.normal(0, 0.002, 50))[:, None]
        np.savez(tmp_path / f"u{i}.npz", audio=speechlike(2.0, seed=i), canonical=MEAN_FACE[:, :2] + motion,
                 neutral=MEAN_FACE[:, :2], fps=np.float64(25), source="synthetic", name=f"u{i}")
    model_config = {"window": 16, "d_model": 32, "num_layers": 1, "num_heads": 2, "audio_kernel_size": 3,
                    "dropout": 0.0, "motion_scale": 10.0}
    torch.manual_seed(0)
    LandmarkDenoiser(audio_dim=featurizer.dim, **model_config).save_pretrained(tmp_path / "init")
    start = load_file(tmp_path / "init" / "diffusion_pytorch_model.safetensors")
    train = {**TRAIN, "audio_dropout": 0.15, "p_prefix": 0.3, "p_upper": 0.2}
    config = _train_config(tmp_path, tmp_path, audio_features="logmel", model=model_config, train=train)
    replicas = _run_training(tmp_path, "train_landmarks", config, "--init_from", str(tmp_path / "init"))
    _check_run(tmp_path, "train_landmarks", "landmark_denoiser", start, replicas)

    # interrupted runs continue: the saved state of step 4 goes on to step 6 (and the next save replaces it)
    shutil.rmtree(tmp_path / "weights")
    first, second = _run_training(tmp_path, "train_landmarks", config, "--max_steps", "6",
                                  "--resume_from_checkpoint", "latest")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], replicas[0][k]) for k in first)
    info = json.loads((tmp_path / "final" / "landmark_denoiser" / "training_info.json").read_text())
    assert info["steps"] == 6 and sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir()) == [
        "checkpoint_2"]


def test_two_process_renderer_training_stays_in_sync(tmp_path):
    from tests.test_face_renderer import RESOLUTION, tiny_model
    from training.data.prepare_renderer_data import RendererClip

    rng = np.random.default_rng(0)
    points = MEAN_FACE[:, :2] - MEAN_FACE[:, :2].min(0)
    points = 4 + points / points.max() * (RESOLUTION - 8)  # the mean face filling the crop
    (tmp_path / "clips").mkdir()
    for i in range(2):
        frames = rng.integers(0, 256, (6, RESOLUTION, RESOLUTION, 3), dtype=np.uint8)
        landmarks = np.repeat(points[None], 6, axis=0).astype(np.float32)
        RendererClip(f"c{i}", frames, frames[::-1].copy(), landmarks, landmarks * 4, np.array([0, 0, 128, 128]),
                     25.0).save(tmp_path / "clips")
    tiny_model().save_pretrained(tmp_path / "init")
    start = load_file(tmp_path / "init" / "diffusion_pytorch_model.safetensors")
    train = {**TRAIN, "p_previous": 0.5, "previous_noise_max": 0.5, "p_flip": 0.5, "max_timestep": 600,
             "validate_every": 100, "validation_samples": 0, "validation_timesteps": [0]}
    scheduler = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}
    config = _train_config(tmp_path, tmp_path / "clips", validation=None, model={}, scheduler=scheduler, train=train)
    replicas = _run_training(tmp_path, "train_renderer", config, "--init_from", str(tmp_path / "init"))
    _check_run(tmp_path, "train_renderer", "face_renderer", start, replicas)


def test_two_process_batch_makes_each_item_once(tmp_path, astronaut):
    from pipeline import TalkingFacePipeline

    TalkingFacePipeline(**get_dummy_components()).save_pretrained(tmp_path / "ckpt")
    Image.fromarray(astronaut).save(tmp_path / "photo.png")
    Image.new("RGB", (200, 200), (90, 120, 150)).save(tmp_path / "wall.png")
    rows = ["image,audio,output"]
    for i, seconds in enumerate((0.6, 0.8, 1.0)):
        sf.write(tmp_path / f"s{i}.wav", speechlike(seconds, seed=i), 16000)
        rows.append(f"photo.png,s{i}.wav,talk{i}.mp4")
    rows.append("wall.png,s0.wav,wall.mp4")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    done = launch("-m", "pipeline", "generate", "--batch", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "out"),
                  "--checkpoint", str(tmp_path / "ckpt"), "--steps", "2", "-q", timeout=600, code=1)
    made = re.findall(r"^\[(\d)/4\] .* -> ", done.stdout, flags=re.M)
    assert sorted(made) == ["1", "2", "3"]  # each good item once, whichever process made it
    assert done.stdout.count("3 of 4 done; 1 failed:") == 1 and done.stdout.count("FAILED") == 1
    assert done.stdout.count("wall.png: No face") == 1
    from pipeline.video import probe_duration

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["talk0.mp4", "talk1.mp4", "talk2.mp4"]
    for i, seconds in enumerate((0.6, 0.8, 1.0)):
        assert probe_duration(tmp_path / "out" / f"talk{i}.mp4")[0] == round(seconds * 25)
