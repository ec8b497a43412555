"""Quality of talking-face generation against real talking-face videos: lip sync, identity, image quality.

    python bench/quality.py --clips ../shared/data/clips --holdout grid_lrwp9a,vox_00098 \\
        [--checkpoint checkpoints] [--out results/quality] [--syncnet syncnet_v2.model]

Every video under ``--clips`` (found recursively: the project's ``<clip>/video.* + audio16k.wav + ref.png``
folders, or HDTF / VoxCeleb-like trees of videos with their own sound) is one test case. Its reference photo
(``ref.png`` beside a lone video, else the video's frame 0) is driven with the clip's own audio, and the result
is compared with the real video. Methods, all in the same run:

* ``static``: the photo on every frame (no motion at all);
* ``energy``: the audio-energy mouth of ``training/evaluate_landmarks.py`` (gain fitted on the non-held-out
  clips), rendered with the warp renderer;
* ``model+warp``: the pipeline's landmark diffusion model (``--checkpoint``) and the warp renderer;
* ``model+diffusion``: the same track through ``pipeline.render.diffusion.DiffusionRenderer`` when that module
  imports and its checkpoint (``<checkpoint>/face_renderer`` + ``renderer_scheduler``) exists; skipped otherwise.
  It costs about 0.2-0.4 s a frame on a CPU, twice per clip (its video and its reconstruction), so by default it
  runs on the held-out clips only and on their first ``--diffusion-seconds`` (4 s); the warp renderer is then also
  scored on those same frames (row ``model+warp (diffusion's frames)``) for a like-for-like comparison;
* ``real``: the real video itself, as the reference values.

Metrics (per clip, then the mean over clips; see ``METRIC_NOTES``):

* lip sync on landmarks, in canonical space (``training.metrics``): mouth-aperture Pearson r at lag 0, the best
  r within ``--max-lag`` frames and its lag (positive = late), LMD of the mouth points (inter-ocular units) — once
  for the generated landmark track, once for the landmarks re-detected on the rendered video (``video``);
* identity: CSIM, the cosine similarity of dlib ResNet face embeddings of rendered frames and the photo;
* image quality: PSNR / SSIM of the renderer driven by the real video's own landmarks against the real frames
  (reconstruction, same 256² crop); sharpness as the variance of the Laplacian (CPBD is not installed), over
  the crop and around the mouth; flicker, the mean absolute frame-to-frame difference, and its ratio to the
  real video's; landmark jitter of the track and of the re-detected video;
* SyncNet LSE-D / LSE-C (``--syncnet``: the public ``syncnet_v2.model`` state dict; nothing is downloaded).

Writes ``quality.md`` (mean and per-clip tables), ``quality.json``, ``mouth.png`` (mouth opening against the real
one over time, a panel per clip) and ``metrics.png`` (metric bars) to ``--out``. Outputs derived from real
clips stay out of version control (``results/`` is git-ignored).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.audio import SAMPLE_RATE, load_audio, num_video_frames  # noqa: E402
from pipeline.canonical import from_canonical, pose_from_transform, to_canonical  # noqa: E402
from pipeline.defaults import DEFAULT_STEPS  # noqa: E402
from pipeline.errors import AudioError, InputError, NoFaceError  # noqa: E402
from pipeline.landmarks import LandmarkTrack  # noqa: E402
from pipeline.regions import MOUTH  # noqa: E402
from pipeline.render.warp import WarpRenderer, resized_crop  # noqa: E402
from training.data.format import Example  # noqa: E402
from training.data.prepare_clips import (  # noqa: E402
    VIDEO_SUFFIXES,
    choose_neutral,
    clip_name,
    find_audio,
    find_videos,
    fit_length,
    is_held_out,
)
from training.evaluate_landmarks import (  # noqa: E402
    DEFAULT_ENERGY_GAIN,
    energy_envelope,
    energy_track,
    fit_energy_gain,
)
from training.metrics import aperture_correlation, landmark_jitter, lmd, mouth_aperture  # noqa: E402

#: PSNR of identical images is infinite; it is reported as this many dB so that means stay finite.
PSNR_CAP = 100.0
#: Temporal smoothing (frames sigma) of re-detected landmarks: the same as ``extract_track`` gives the real ones.
REDETECT_SMOOTHING = 0.7
#: The mouth box for the mouth sharpness: the mouth landmarks' box grown by this fraction of its size per side.
MOUTH_MARGIN = 0.25
#: The warp renderer scored on the same (first) frames as the diffusion renderer, when that one runs on fewer.
SAME_FRAMES = "model+warp (diffusion's frames)"
#: Order of the methods in tables and plots.
METHODS = ("static", "energy", "model+warp", "model+diffusion", SAME_FRAMES, "real")

#: (key, column header, format) of the tables.
COLUMNS = (
    ("r0", "r@0", "{:.3f}"),
    ("best_r", "best r", "{:.3f}"),
    ("best_lag", "lag", "{:+.1f}"),
    ("lmd", "LMD", "{:.4f}"),
    ("v_r0", "r@0 video", "{:.3f}"),
    ("v_best_r", "best r video", "{:.3f}"),
    ("v_best_lag", "lag video", "{:+.1f}"),
    ("v_lmd", "LMD video", "{:.4f}"),
    ("lse_d", "LSE-D", "{:.2f}"),
    ("lse_c", "LSE-C", "{:.2f}"),
    ("csim", "CSIM", "{:.3f}"),
    ("psnr", "PSNR", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("sharpness", "sharp", "{:.0f}"),
    ("sharpness_mouth", "sharp mouth", "{:.0f}"),
    ("flicker", "flicker", "{:.2f}"),
    ("flicker_rel", "flicker/real", "{:.2f}"),
    ("jitter", "jitter", "{:.4f}"),
    ("v_jitter", "jitter video", "{:.4f}"),
    ("missed", "no face", "{:.1%}"),
)

METRIC_NOTES = [
    "r@0 / best r / lag: Pearson r of the mouth aperture (mean inner-lip gap, canonical space) against the real "
    "video's, at lag 0 and best within +-max-lag frames (positive lag = late); 0 for a constant mouth (static).",
    "LMD: mean distance of the 20 mouth landmarks to the real ones, canonical space, inter-ocular units.",
    "`video` columns: the same on landmarks re-detected (dlib) on the rendered frames, smoothed like the real track.",
    "LSE-D / LSE-C: SyncNet (syncnet_v2) mean embedding distance at the best audio offset (lower is better) and "
    "confidence = median distance over offsets -15..15 minus that minimum (higher is better); only with --syncnet.",
    "CSIM: cosine similarity of dlib ResNet face embeddings (face_recognition_models) of rendered frames and the "
    "photo; for `real`, of the real frames and the photo (how much the real face itself varies).",
    "PSNR / SSIM: reconstruction: the renderer driven by the real video's own landmarks against the real frames, "
    "same 256² crop, frames 1..T-1 (frame 0 is the photo; every --image-stride-th); a renderer property, so `energy` "
    "(same warp renderer "
    f"as model+warp) has none; `static` is the photo itself against the real frames. Identical images give "
    f"PSNR {PSNR_CAP:g} dB (capped, not infinite).",
    "sharp / sharp mouth: variance of the Laplacian of the grey crop / of the mouth box (a no-reference sharpness "
    "measure used instead of CPBD, which is not installed); compare with `real`.",
    "flicker: mean absolute difference of consecutive frames (0-255 grey levels); flicker/real: divided by the real "
    "video's (head motion included, so 1 is not a target: below 1 means stiller than the real video).",
    "jitter / jitter video: mean |second time difference| of the lower-face landmarks, IOD per frame^2, of the "
    "track / of the re-detected landmarks. no face: share of rendered frames where dlib found no face.",
]


# ---------------------------------------------------------------------------------------------------
# Image metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (``skimage.metrics.peak_signal_noise_ratio``, data range 255); identical
    images, whose PSNR is infinite, give :data:`PSNR_CAP` so that means over frames stay finite."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = np.asarray(a), np.asarray(b)
    if np.array_equal(a, b):
        return PSNR_CAP
    return float(min(PSNR_CAP, peak_signal_noise_ratio(a, b, data_range=255)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 RGB (or grey) images (``skimage.metrics.structural_similarity``, 7x7 windows)."""
    from skimage.metrics import structural_similarity

    a, b = np.asarray(a), np.asarray(b)
    channel_axis = -1 if a.ndim == 3 else None
    return float(structural_similarity(a, b, data_range=255, channel_axis=channel_axis))


def _grey(image: np.ndarray) -> np.ndarray:
    import cv2

    image = np.asarray(image, dtype=np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def sharpness(image: np.ndarray, box: Sequence[int] | None = None) -> float:
    """Variance of the Laplacian of the grey image (or of its ``box`` x0, y0, x1, y1): higher is sharper."""
    import cv2

    grey = _grey(image)
    if box is not None:
        x0, y0, x1, y1 = box
        grey = grey[y0:y1, x0:x1]
    if grey.size == 0:
        return float("nan")
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def flicker(frames: np.ndarray) -> float:
    """Mean absolute grey-level difference between consecutive frames; 0 for a still video or one frame."""
    frames = np.asarray(frames)
    if len(frames) < 2:
        return 0.0
    total = 0.0
    previous = _grey(frames[0]).astype(np.float32)
    for frame in frames[1:]:
        current = _grey(frame).astype(np.float32)
        total += float(np.abs(current - previous).mean())
        previous = current
    return total / (len(frames) - 1)


def mouth_box(landmarks: np.ndarray, shape: tuple[int, ...], margin: float = MOUTH_MARGIN) -> tuple[int, int, int, int]:
    """Box (x0, y0, x1, y1) around the mouth landmarks of one face, grown by ``margin``, inside the image."""
    mouth = np.asarray(landmarks, dtype=np.float64)[list(MOUTH)]
    lo, hi = mouth.min(axis=0), mouth.max(axis=0)
    pad = margin * (hi - lo).max()
    x0, y0 = np.floor(lo - pad).astype(int)
    x1, y1 = np.ceil(hi + pad).astype(int)
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


# ---------------------------------------------------------------------------------------------------
# Identity: dlib face embeddings


def face_model_path(name: str) -> Path:
    """A model file of the ``face_recognition_models`` package, found without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The package 'face_recognition_models' is not installed (pip install -r requirements.txt).")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from face_recognition_models.")
    return path


class FaceEmbedder:
    """dlib's 128-d face descriptor (``dlib_face_recognition_resnet_model_v1.dat``) of a face given its 68 landmarks.

    The landmarks place dlib's aligned 150x150 face chip, so no detector runs here. dlib's own convention takes
    two faces as the same person below a Euclidean distance of 0.6; here faces are compared by cosine similarity.
    """

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._model = dlib.face_recognition_model_v1(str(face_model_path("dlib_face_recognition_resnet_model_v1.dat")))

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        dlib = self._dlib
        points = np.asarray(landmarks, dtype=np.float64)
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        rect = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points])
        image = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        return np.asarray(self._model.compute_face_descriptor(image, shape), dtype=np.float64)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def csim(embedder: FaceEmbedder, reference: np.ndarray, frames: Sequence[np.ndarray], landmarks: np.ndarray) -> float:
    """Mean cosine similarity of the embeddings of ``frames`` (with their ``landmarks``) to the ``reference`` one."""
    return float(np.mean([cosine(embedder.embed(f, lm), reference) for f, lm in zip(frames, landmarks, strict=False)]))


def sample_indices(num_frames: int, count: int) -> np.ndarray:
    """Up to ``count`` frame indices spread evenly over the clip."""
    return np.unique(np.linspace(0, num_frames - 1, max(1, min(count, num_frames))).round().astype(int))


# ---------------------------------------------------------------------------------------------------
# SyncNet (LSE-C / LSE-D)


def mfcc(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, numcep: int = 13, nfilt: int = 26,
         winlen: float = 0.025, winstep: float = 0.01, nfft: int = 512, preemph: float = 0.97,
         ceplifter: int = 22) -> np.ndarray:
    """MFCCs ``(frames, numcep)`` at 100 Hz, as ``python_speech_features.mfcc`` computes them (its defaults:
    rectangular 25 ms windows, 26 mel bands, liftering 22, c0 replaced by the log frame energy), which is what
    SyncNet was trained on. ``audio`` is in int16 units (SyncNet reads 16-bit wav files)."""
    from scipy.fft import dct

    signal = np.asarray(audio, dtype=np.float64)
    signal = np.append(signal[0], signal[1:] - preemph * signal[:-1])
    frame_len, frame_step = int(round(winlen * sample_rate)), int(round(winstep * sample_rate))
    count = 1 if len(signal) <= frame_len else 1 + int(math.ceil((len(signal) - frame_len) / frame_step))
    padded = np.concatenate([signal, np.zeros((count - 1) * frame_step + frame_len - len(signal))])
    index = np.arange(frame_len)[None] + frame_step * np.arange(count)[:, None]
    power = np.abs(np.fft.rfft(padded[index], nfft)) ** 2 / nfft
    energy = power.sum(axis=1)
    energy[energy == 0] = np.finfo(float).eps

    def hz2mel(hz):
        return 2595 * np.log10(1 + hz / 700.0)

    def mel2hz(mel):
        return 700 * (10 ** (mel / 2595.0) - 1)

    bins = np.floor((nfft + 1) * mel2hz(np.linspace(hz2mel(0), hz2mel(sample_rate / 2), nfilt + 2)) / sample_rate)
    bank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(int(bins[j]), int(bins[j + 1])):
            bank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            bank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    feat = power @ bank.T
    feat[feat == 0] = np.finfo(float).eps
    feat = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    feat *= 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    feat[:, 0] = np.log(energy)
    return feat


def build_syncnet(embedding: int = 1024):
    """The SyncNet 'S' network of joonson/syncnet_python (``syncnet_v2.model``): audio and lip towers.

    Audio tower input ``(B, 1, 13, 20)`` MFCCs (0.2 s); lip tower input ``(B, 3, 5, 224, 224)``: five BGR
    face crops, 0-255. Both give ``(B, embedding)``; parameter names match the public state dict.
    """
    import torch.nn as nn

    def conv2(cin, cout, pool=None, relu_inplace=True):
        layers = [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=relu_inplace)]
        return layers + ([pool] if pool is not None else [])

    def conv3(cin, cout, kernel, stride=(1, 1, 1), padding=0, pool=None):
        layers = [nn.Conv3d(cin, cout, kernel_size=kernel, stride=stride, padding=padding),
                  nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]
        return layers + ([pool] if pool is not None else [])

    def head():
        return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding))

    class SyncNetS(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.netcnnaud = nn.Sequential(
                *conv2(1, 64, nn.MaxPool2d(kernel_size=1, stride=1)),
                *conv2(64, 192, nn.MaxPool2d(kernel_size=3, stride=(1, 2))),
                *conv2(192, 384),
                *conv2(384, 256),
                *conv2(256, 256, nn.MaxPool2d(kernel_size=3, stride=2)),
                nn.Conv2d(256, 512, kernel_size=(5, 4)), nn.BatchNorm2d(512), nn.ReLU(),
            )
            self.netfcaud = head()
            self.netfclip = head()
            self.netcnnlip = nn.Sequential(
                *conv3(3, 96, (5, 7, 7), (1, 2, 2), 0, nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2))),
                *conv3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1),
                       nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))),
                *conv3(256, 256, (1, 3, 3), padding=(0, 1, 1)),
                *conv3(256, 256, (1, 3, 3), padding=(0, 1, 1)),
                *conv3(256, 256, (1, 3, 3), padding=(0, 1, 1),
                       pool=nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2))),
                *conv3(256, 512, (1, 6, 6)),
            )

        def forward_aud(self, x):
            return self.netfcaud(self.netcnnaud(x).flatten(1))

        def forward_lip(self, x):
            return self.netfclip(self.netcnnlip(x).flatten(1))

    return SyncNetS()


def load_syncnet(path: Path, device: str = "cpu"):
    """SyncNet with the weights of a ``syncnet_v2.model`` state dict (loaded with ``weights_only=True``)."""
    import torch

    if not Path(path).is_file():
        raise SystemExit(f"SyncNet weights {path} not found (get syncnet_v2.model from joonson/syncnet_python).")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise SystemExit(f"{path} is not a SyncNet state dict (syncnet_v2.model).")
    state = {k.removeprefix("__S__."): v for k, v in state.items()}
    model = build_syncnet(embedding=int(state["netfcaud.3.weight"].shape[0]) if "netfcaud.3.weight" in state else 1024)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # absent from old PyTorch saves
    if missing or unexpected:
        raise SystemExit(f"{path} does not fit SyncNet: missing {missing[:5]}, unexpected {list(unexpected)[:5]}.")
    return model.to(device).eval()


def syncnet_crops(frames: np.ndarray, landmarks: np.ndarray, crop_scale: float = 0.4, side: int = 224) -> np.ndarray:
    """SyncNet's face crops ``(T, side, side, 3)`` BGR, cut as syncnet_python's ``run_pipeline.crop_video`` does
    from a face box: half-size ``s``, centre median-filtered over 13 frames, rows ``cy - s .. cy + s(1 + 2c)``,
    columns ``cx -+ s(1 + c)``, grey (110) outside the frame. The face box (S3FD there) is approximated by the
    landmark box raised by a fifth of its height (the forehead the landmarks do not reach)."""
    import cv2
    from scipy.signal import medfilt

    points = np.asarray(landmarks, dtype=np.float64)
    lo, hi = points.min(axis=1), points.max(axis=1)
    lo[:, 1] -= 0.2 * (hi[:, 1] - lo[:, 1])
    half = (hi - lo).max(axis=1) / 2
    centre = (lo + hi) / 2
    kernel = min(13, len(points) - (1 - len(points) % 2))
    if kernel >= 3:
        half = medfilt(half, kernel)
        centre = np.stack([medfilt(centre[:, 0], kernel), medfilt(centre[:, 1], kernel)], axis=1)
    out = np.empty((len(frames), side, side, 3), np.uint8)
    for t, frame in enumerate(frames):
        s, (cx, cy) = half[t], centre[t]
        pad = int(s * (1 + 2 * crop_scale)) + 1
        padded = cv2.copyMakeBorder(np.ascontiguousarray(frame), pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                    value=(110, 110, 110))
        y0, y1 = int(cy + pad - s), int(cy + pad + s * (1 + 2 * crop_scale))
        x0, x1 = int(cx + pad - s * (1 + crop_scale)), int(cx + pad + s * (1 + crop_scale))
        out[t] = cv2.resize(padded[y0:y1, x0:x1], (side, side))[..., ::-1]
    return out


def lse(model, crops: np.ndarray, audio: np.ndarray, fps: float, vshift: int = 15, batch: int = 16,
        device: str = "cpu") -> dict[str, float]:
    """LSE-D, LSE-C and the AV offset of 224² BGR face crops against 16 kHz audio, as syncnet_python computes them.

    Each 5-frame window is embedded by the lip tower and the 0.2 s of MFCCs starting at the same time (4 MFCC
    frames per video frame at 25 fps) by the audio tower; for every offset in ``-vshift..vshift`` the distances
    are averaged over windows; LSE-D is the smallest mean distance, LSE-C the median over offsets minus it, and
    ``offset`` the best offset (positive: the audio leads). Needs at least 6 frames.
    """
    import torch

    cc = mfcc(np.asarray(audio, dtype=np.float64) * 32768.0).T  # (13, N), int16 units like SyncNet's wav input
    step = 100.0 / fps  # MFCC frames per video frame (4 at 25 fps)
    # as syncnet_python: windows start at frames 0 .. min(frames, audio frames) - 6
    last = min(len(crops), int(len(audio) * fps / SAMPLE_RATE)) - 5
    while last > 0 and int(round((last - 1) * step)) + 20 > cc.shape[1]:
        last -= 1
    if last < 1:
        return {"lse_d": float("nan"), "lse_c": float("nan"), "lse_offset": float("nan")}
    video = torch.from_numpy(np.ascontiguousarray(crops[: last + 4])).float().permute(3, 0, 1, 2)  # (3, T, H, W)
    mel = torch.from_numpy(cc).float()
    lip_feat, aud_feat = [], []
    with torch.no_grad():
        for start in range(0, last, batch):
            idx = range(start, min(last, start + batch))
            lips = torch.stack([video[:, i:i + 5] for i in idx]).to(device)
            auds = torch.stack([mel[None, :, int(round(i * step)):int(round(i * step)) + 20] for i in idx]).to(device)
            lip_feat.append(model.forward_lip(lips).cpu())
            aud_feat.append(model.forward_aud(auds).cpu())
    lip, aud = torch.cat(lip_feat), torch.cat(aud_feat)
    padded = torch.nn.functional.pad(aud, (0, 0, vshift, vshift))
    window = 2 * vshift + 1
    dists = torch.stack([torch.nn.functional.pairwise_distance(lip[[i]].repeat(window, 1), padded[i:i + window])
                         for i in range(len(lip))], 1)
    mean = dists.mean(1)
    minval, minidx = torch.min(mean, 0)
    return {"lse_d": float(minval), "lse_c": float(torch.median(mean) - minval), "lse_offset": float(vshift - minidx)}


# ---------------------------------------------------------------------------------------------------
# Clips


@dataclass
class Clip:
    """One real talking-face video, ready to be compared against."""

    name: str
    video: Path
    held_out: bool
    audio: np.ndarray  # 16 kHz mono, cut to the evaluated frames
    fps: float
    num_frames: int  # evaluated frames: the fewer of the video's and the audio's
    reference: np.ndarray  # (H, W, 3) RGB photo: ref.png or frame 0
    reference_landmarks: np.ndarray  # (68, 2) detected on the photo
    real_track: np.ndarray  # (T, 68, 2) pixel landmarks of the real video (extract_track)
    missing_frames: int = 0
    load_s: float = 0.0


def reference_image(video: Path) -> np.ndarray:
    """``ref.png`` beside a video alone in its folder (the project's clip layout), else the video's frame 0."""
    from pipeline.images import load_image
    from pipeline.video import iter_video_frames

    ref = video.parent / "ref.png"
    alone = sum(1 for p in video.parent.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES) == 1
    if ref.is_file() and alone:
        return load_image(ref)
    return next(iter_video_frames(video)).copy()


def load_clip(video: Path, root: Path, analyzer, holdout: set[str], max_seconds: float | None = None) -> Clip:
    from pipeline.video import extract_track

    start = time.perf_counter()
    name = clip_name(video, root)
    audio_path = find_audio(video)
    audio = load_audio(audio_path if audio_path is not None else video)
    track, report = extract_track(video, analyzer)
    frames = track.points2d
    if max_seconds:
        audio = audio[: int(max_seconds * SAMPLE_RATE)]
    num = min(num_video_frames(len(audio), track.fps), len(frames))
    audio = audio[: int(round(num * SAMPLE_RATE / track.fps))]
    reference = reference_image(video)
    ref_landmarks = analyzer.detect(reference).landmarks
    return Clip(name, video, is_held_out(video, root, name, holdout), audio, track.fps, num, reference,
                ref_landmarks, frames[:num].astype(np.float64), len(report.missing_frames), time.perf_counter() - start)


def real_frames(clip: Clip) -> list[np.ndarray]:
    from pipeline.video import iter_video_frames

    frames = []
    for frame in iter_video_frames(clip.video):
        frames.append(frame.copy())
        if len(frames) == clip.num_frames:
            break
    return frames


def energy_gain(clips: list[Clip], override: float | None) -> tuple[float, str]:
    """The energy baseline's gain: given, else fitted (``fit_energy_gain``) on the clips that are not held out."""
    if override is not None:
        return override, "given"
    fit = [c for c in clips if not c.held_out]
    if not fit or len(fit) == len(clips):
        why = "no --holdout split" if fit else "no non-held-out clip evaluated"
        return DEFAULT_ENERGY_GAIN, f"default constant ({why} to fit it on without seeing the test clips)"
    examples = []
    for c in fit:
        canonical, to_canon = to_canonical(c.real_track)
        canonical = canonical[..., :2]
        full = fit_length(canonical, num_video_frames(len(c.audio), c.fps))
        neutral = canonical[choose_neutral(canonical, pose_from_transform(to_canon))]
        examples.append(Example(c.audio, full, neutral, c.fps, "clips", c.name))
    gain, frames = fit_energy_gain(examples)
    return gain, f"fitted on {len(examples)} non-held-out clips ({frames} frames)"


# ---------------------------------------------------------------------------------------------------
# Methods


def load_diffusion_renderer(folder: Path | None, scheduler_folder: Path | None, size: int, device: str,
                            seed: int = 0) -> tuple[Any, str]:
    """The pipeline's diffusion renderer (``DiffusionRenderer.from_pretrained(folder, scheduler_folder)`` with the
    pipeline's ``DIFFUSION_SETTINGS``), rendering ``size``-pixel crops with a seeded noise generator, or
    ``(None, why not)``."""
    import torch

    from pipeline.pipeline_talking_face import DIFFUSION_SETTINGS
    from pipeline.render.diffusion import DiffusionRenderer

    if folder is None or not Path(folder).is_dir():
        return None, f"no diffusion renderer checkpoint at {folder}"
    if scheduler_folder is None or not Path(scheduler_folder).is_dir():
        return None, f"no renderer scheduler at {scheduler_folder}"
    renderer = DiffusionRenderer.from_pretrained(folder, scheduler_folder, device=device, size=size,
                                                 generator=torch.Generator().manual_seed(seed), **DIFFUSION_SETTINGS)
    settings = ", ".join(f"{k} {v}" for k, v in DIFFUSION_SETTINGS.items())
    return renderer, f"{DiffusionRenderer.__name__} from {folder} ({settings})"


def redetect(analyzer, frames: np.ndarray, fps: float, still: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
    """Landmarks ``(T, 68, 2)`` the front end finds on rendered frames (gaps interpolated, smoothed like
    ``extract_track``) and which frames had no face ``(T,)`` bool; ``still`` frames are all the same, so only the first
    is searched."""
    from pipeline.edits import smooth

    found: list[np.ndarray | None] = []
    for frame in frames[:1] if still else frames:
        try:
            found.append(analyzer.detect(frame).landmarks.astype(np.float64))
        except NoFaceError:
            found.append(None)
    if still:
        found = found * len(frames)
    missed = np.array([p is None for p in found])
    if missed.all():
        return None, missed
    known = np.array([i for i, p in enumerate(found) if p is not None])
    values = np.stack([found[i] for i in known]).reshape(len(known), -1)
    t = np.arange(len(found))
    filled = np.stack([np.interp(t, known, values[:, k]) for k in range(values.shape[1])], axis=1).reshape(-1, 68, 2)
    track = LandmarkTrack(filled, fps, (frames.shape[2], frames.shape[1]))
    return smooth(track, REDETECT_SMOOTHING).points2d.astype(np.float64), missed


def canonical_xy(points: np.ndarray) -> np.ndarray:
    """The canonical x, y ``(T, 68, 2)`` of pixel landmarks ``(T, 68, 2|3)``: what the lip metrics compare."""
    return to_canonical(points)[0][..., :2]


def lip_metrics(pred_canonical: np.ndarray, real_canonical: np.ndarray, max_lag: int, prefix: str = "") -> dict:
    r0, best_r, best_lag = aperture_correlation(pred_canonical, real_canonical, max_lag)
    return {f"{prefix}r0": r0, f"{prefix}best_r": best_r, f"{prefix}best_lag": best_lag,
            f"{prefix}lmd": lmd(pred_canonical, real_canonical), f"{prefix}jitter": landmark_jitter(pred_canonical)}


@dataclass
class Context:
    """What every clip's evaluation shares."""

    analyzer: Any
    embedder: FaceEmbedder
    warp: WarpRenderer
    pipe: Any = None
    diffusion: Any = None
    syncnet: Any = None
    gain: float = DEFAULT_ENERGY_GAIN
    steps: int = DEFAULT_STEPS
    guidance: float = 2.0
    seed: int = 0
    head_motion: float = 1.0
    max_lag: int = 5
    csim_frames: int = 8
    image_stride: int = 2
    diffusion_clips: set | None = None  # clips the diffusion renderer runs on (None: all)
    diffusion_seconds: float = 0.0  # the first seconds of each clip it renders (0: all)
    device: str = "cpu"


def generate_model_track(ctx: Context, clip: Clip) -> np.ndarray:
    """The model's landmark track for the clip's photo and audio, ``(T, 68, 2)`` photo pixels."""
    import torch

    inputs = ctx.pipe.prepare(clip.reference, clip.audio)
    inputs.fps = clip.fps
    with torch.no_grad():
        track = ctx.pipe.generate_landmarks(inputs, num_inference_steps=ctx.steps, guidance_scale=ctx.guidance,
                                            generator=torch.Generator().manual_seed(ctx.seed),
                                            head_motion=ctx.head_motion)
    return ctx.pipe.fit_track(track, inputs)[: clip.num_frames].astype(np.float64)


@dataclass
class RealClip:
    """The real video of a clip, prepared for comparisons: canonical track, 256² crops (same box as the renders)."""

    track: np.ndarray  # (T, 68, 2) photo pixels
    canonical: np.ndarray  # (T, 68, 2)
    frames: list  # T full frames
    crops: np.ndarray  # (T, S, S, 3)
    crop_landmarks: np.ndarray  # (T, 68, 2) in crop pixels
    embedding: np.ndarray  # the photo's face embedding


def score_video(ctx: Context, clip: Clip, real: RealClip, track: np.ndarray, video: np.ndarray,
                recon: np.ndarray | None, found: np.ndarray | None, missed: np.ndarray, frames: int,
                still: bool) -> dict:
    """Metrics of one method on the clip's first ``frames`` frames: its landmark ``track`` (photo pixels), its
    rendered ``video``, the landmarks ``found`` on that video (``missed``: frames without a face) and, for a
    renderer, its reconstruction ``recon`` (driven by the real landmarks)."""
    n = frames
    real_canonical = real.canonical[:n]
    m: dict[str, Any] = lip_metrics(canonical_xy(track[:n]), real_canonical, ctx.max_lag)
    m["missed"] = float(np.mean(missed[:n]))
    video = video[:n]
    if found is not None:
        found = found[:n]
        m.update(lip_metrics(canonical_xy(found), real_canonical, ctx.max_lag, prefix="v_"))
        if still:  # every frame is the photo: one embedding says it all
            m["csim"] = cosine(ctx.embedder.embed(video[0], found[0]), real.embedding)
        else:
            picks = sample_indices(n, ctx.csim_frames)
            m["csim"] = csim(ctx.embedder, real.embedding, video[picks], found[picks])
        m["sharpness_mouth"] = float(np.mean([sharpness(f, mouth_box(lm, f.shape))
                                              for f, lm in zip(video, found, strict=False)]))
        if ctx.syncnet is not None:
            m.update(lse(ctx.syncnet, syncnet_crops(video, found), clip.audio, clip.fps, device=ctx.device))
    m["sharpness"] = float(np.mean([sharpness(f) for f in video]))
    m["flicker"] = flicker(video)
    real_flicker = flicker(real.crops[:n])
    m["flicker_rel"] = m["flicker"] / real_flicker if real_flicker > 0 else float("nan")
    if recon is not None and n > 1:
        picks = range(1, n, max(1, ctx.image_stride))  # frame 0 is the photo itself
        m["psnr"] = float(np.mean([psnr(recon[i], real.crops[i]) for i in picks]))
        m["ssim"] = float(np.mean([ssim(recon[i], real.crops[i]) for i in picks]))
    m["frames"] = n
    return m


def evaluate_clip(ctx: Context, clip: Clip) -> tuple[dict[str, dict], dict[str, np.ndarray], dict]:
    """``({method: metrics}, {series name: mouth aperture per frame}, timings)`` of one clip."""
    timing: dict[str, float] = {}
    tick = time.perf_counter()
    size = ctx.warp.size
    warp_ctx = ctx.warp.prepare(clip.reference, clip.reference_landmarks)
    full = real_frames(clip)
    T = min(clip.num_frames, len(full))
    real_track = clip.real_track[:T]
    real = RealClip(real_track, canonical_xy(real_track), full[:T],
                    np.stack([resized_crop(f, warp_ctx.box, size) for f in full[:T]]),
                    ctx.warp.crop_landmarks(warp_ctx, real_track),
                    ctx.embedder.embed(clip.reference, clip.reference_landmarks))
    ref_canonical, ref_to_canonical = to_canonical(clip.reference_landmarks)
    timing["real"] = time.perf_counter() - tick

    # landmark tracks, photo pixels
    tick = time.perf_counter()
    tracks: dict[str, np.ndarray] = {"static": np.repeat(clip.reference_landmarks[None].astype(np.float64), T, 0)}
    envelope = energy_envelope(clip.audio, clip.fps, num_video_frames(len(clip.audio), clip.fps))[:T]
    tracks["energy"] = from_canonical(energy_track(ref_canonical, envelope, ctx.gain), ref_to_canonical)[..., :2]
    if ctx.pipe is not None:
        tracks["model"] = generate_model_track(ctx, clip)[:T]
    timing["landmarks"] = time.perf_counter() - tick

    # rendered videos (size² crops) and the renderers' reconstructions driven by the real landmarks
    tick = time.perf_counter()
    videos = {"static": np.repeat(np.asarray(warp_ctx.source)[None], T, 0),
              "energy": ctx.warp.render(warp_ctx, tracks["energy"])}
    recon = {"static": videos["static"], "model+warp": ctx.warp.render(warp_ctx, real_track)}
    if "model" in tracks:
        videos["model+warp"] = ctx.warp.render(warp_ctx, tracks["model"])
    timing["render_warp"] = time.perf_counter() - tick
    diffusion_frames = 0
    wanted = ctx.diffusion_clips is None or clip.name in ctx.diffusion_clips
    if ctx.diffusion is not None and "model" in tracks and wanted:
        tick = time.perf_counter()
        diffusion_frames = T
        if ctx.diffusion_seconds:
            diffusion_frames = min(T, max(2, int(round(ctx.diffusion_seconds * clip.fps))))
        # a context is one video stream: prepare afresh for each video so that both start at frame 0
        videos["model+diffusion"] = np.asarray(ctx.diffusion.render(
            ctx.diffusion.prepare(clip.reference, clip.reference_landmarks), tracks["model"][:diffusion_frames]))
        recon["model+diffusion"] = np.asarray(ctx.diffusion.render(
            ctx.diffusion.prepare(clip.reference, clip.reference_landmarks), real_track[:diffusion_frames]))
        timing["render_diffusion"] = time.perf_counter() - tick

    tick = time.perf_counter()
    track_of = {"static": "static", "energy": "energy", "model+warp": "model", "model+diffusion": "model"}
    results: dict[str, dict] = {}
    apertures: dict[str, np.ndarray] = {"real": mouth_aperture(real.canonical)}
    found_on: dict[str, tuple] = {}
    for method, video in videos.items():
        still = method == "static"
        found, missed = found_on[method] = redetect(ctx.analyzer, video, clip.fps, still=still)
        results[method] = score_video(ctx, clip, real, tracks[track_of[method]], video, recon.get(method), found,
                                      missed, len(video), still)
        if method != "model+diffusion":
            apertures[method] = mouth_aperture(canonical_xy(tracks[track_of[method]]))
        if found is not None:
            apertures[f"{method} (video)"] = mouth_aperture(canonical_xy(found))
    if 0 < diffusion_frames <= T and "model+warp" in videos:  # the warp on the diffusion row's frames, to compare
        found, missed = found_on["model+warp"]
        results[SAME_FRAMES] = score_video(ctx, clip, real, tracks["model"], videos["model+warp"], recon["model+warp"],
                                           found, missed, diffusion_frames, False)
    m: dict[str, Any] = {"r0": 1.0, "best_r": 1.0, "best_lag": 0, "lmd": 0.0, "jitter": landmark_jitter(real.canonical),
                         "missed": clip.missing_frames / max(clip.num_frames, 1), "frames": T}
    picks = sample_indices(T, ctx.csim_frames)
    m["csim"] = csim(ctx.embedder, real.embedding, [real.frames[i] for i in picks], real_track[picks])
    m["sharpness"] = float(np.mean([sharpness(f) for f in real.crops]))
    m["sharpness_mouth"] = float(np.mean([sharpness(f, mouth_box(lm, f.shape))
                                          for f, lm in zip(real.crops, real.crop_landmarks, strict=False)]))
    m["flicker"], m["flicker_rel"] = flicker(real.crops), 1.0
    if ctx.syncnet is not None:
        m.update(lse(ctx.syncnet, syncnet_crops(np.stack(real.frames), real_track), clip.audio, clip.fps,
                     device=ctx.device))
    results["real"] = m
    timing["metrics"] = time.perf_counter() - tick
    return results, apertures, timing


# ---------------------------------------------------------------------------------------------------
# Reporting


def mean_metrics(per_clip: dict[str, dict[str, dict]], names: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{method: {metric: mean over the clips in names}}``; missing and NaN values are left out."""
    means: dict[str, dict[str, float]] = {}
    for method in METHODS:
        rows = [per_clip[n][method] for n in names if method in per_clip[n]]
        if not rows:
            continue
        keys = {k for r in rows for k in r}
        means[method] = {}
        for k in sorted(keys):
            values = [r[k] for r in rows if k in r and r[k] is not None and np.isfinite(r[k])]
            if values:
                means[method][k] = float(np.mean(values))
    return means


def _columns(means: dict[str, dict]) -> list[tuple[str, str, str]]:
    present = {k for m in means.values() for k in m}
    return [c for c in COLUMNS if c[0] in present]


def _cell(metrics: dict, key: str, fmt: str) -> str:
    value = metrics.get(key)
    return "—" if value is None or not np.isfinite(value) else fmt.format(value)


def table(means: dict[str, dict], columns: list[tuple[str, str, str]], first: str = "method") -> str:
    lines = ["| " + " | ".join([first] + [h for _, h, _ in columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    for method, metrics in means.items():
        lines.append("| " + " | ".join([method] + [_cell(metrics, k, f) for k, _, f in columns]) + " |")
    return "\n".join(lines)


def report(per_clip: dict, clips: list[Clip], notes: list[str]) -> str:
    names = [c.name for c in clips]
    held = [c.name for c in clips if c.held_out]
    means = mean_metrics(per_clip, names)
    columns = _columns(means)
    lines = ["# Talking-face quality benchmark", "", *[f"- {n}" for n in notes], ""]
    if held:
        lines += [f"## Mean over the {len(held)} held-out clips", "", table(mean_metrics(per_clip, held), columns), ""]
    if len(held) < len(names):
        seen = " (the model was trained on the ones not held out)" if held else ""
        lines += [f"## Mean over all {len(names)} clips{seen}", "", table(means, columns), ""]
    lines += ["## Per clip", ""]
    per_rows = {}
    for c in clips:
        for method in METHODS:
            if method in per_clip[c.name]:
                per_rows[f"{c.name}{' *' if c.held_out else ''} / {method}"] = per_clip[c.name][method]
    lines += [table(per_rows, columns, first="clip / method"), ""]
    if held:
        lines += ["`*` held out from training.", ""]
    lines += ["## Metrics", "", *[f"- {n}" for n in METRIC_NOTES], ""]
    return "\n".join(lines)


def plot_mouths(apertures: dict[str, dict[str, np.ndarray]], fps: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(apertures)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 2.6 * rows), squeeze=False)
    styles = {"real": ("k", "-", 2.0), "static": ("tab:gray", ":", 1.2), "energy": ("tab:orange", "-", 1.0),
              "model+warp": ("tab:blue", "-", 1.2), "model+warp (video)": ("tab:blue", "--", 0.8),
              "model+diffusion (video)": ("tab:green", "--", 0.8)}
    for ax, name in zip(axes.ravel(), names, strict=False):
        for label, series in apertures[name].items():
            if label not in styles:
                continue
            colour, line, width = styles[label]
            shown = "model" if label == "model+warp" else label
            ax.plot(np.arange(len(series)) / fps[name], series, color=colour, linestyle=line, linewidth=width,
                    label=shown)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.set_ylabel("mouth opening (IOD)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_bars(means: dict[str, dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [c for c in COLUMNS if c[0] not in ("best_lag", "v_best_lag", "missed")
            and any(c[0] in m for m in means.values())]
    cols = 4
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    colours = {"static": "tab:gray", "energy": "tab:orange", "model+warp": "tab:blue", "model+diffusion": "tab:green",
               "real": "black"}
    for ax, (key, header, _) in zip(axes.ravel(), keys, strict=False):
        methods = [m for m in means if key in means[m]]
        ax.bar(range(len(methods)), [means[m][key] for m in methods],
               color=[colours.get(m, "tab:purple") for m in methods])
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=7)
        ax.set_title(header, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------
# Driver


def _checkpoint(path: str | None) -> tuple[Path | None, bool]:
    """The pipeline folder and whether the user named it (a missing default only skips the model)."""
    given = path is not None
    candidate = Path(path or "checkpoints")
    if not candidate.is_absolute() and not candidate.exists() and (REPO / candidate).exists():
        candidate = REPO / candidate
    return candidate, given


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True,
                        help="folder of talking-face videos (searched recursively)")
    parser.add_argument("--holdout", default="", help="comma-separated clip names held out from training")
    parser.add_argument("--only", default="", help="evaluate only these comma-separated clips (names or path parts)")
    parser.add_argument("--checkpoint", help="pipeline folder with model_index.json (default: checkpoints/)")
    parser.add_argument("--renderer-checkpoint", type=Path,
                        help="diffusion renderer folder (default: <checkpoint>/face_renderer)")
    parser.add_argument("--renderer-scheduler", type=Path,
                        help="its sampling scheduler folder (default: renderer_scheduler/ beside it)")
    parser.add_argument("--no-diffusion", action="store_true", help="leave the diffusion renderer out")
    parser.add_argument("--diffusion-clips", choices=("heldout", "all"), default="heldout",
                        help="clips the diffusion renderer runs on (heldout: the --holdout ones, else all)")
    parser.add_argument("--diffusion-seconds", type=float, default=4.0,
                        help="render only the first seconds of a clip with the diffusion renderer (0: all; about "
                             "0.2-0.4 s a frame on a CPU, twice per clip)")
    parser.add_argument("--syncnet", type=Path, help="syncnet_v2.model weights for LSE-D / LSE-C (not downloaded)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "quality")
    parser.add_argument("--size", type=int, default=256, help="side of the rendered face crops")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="DDIM steps of the landmark model")
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--head-motion", type=float, default=1.0, help="the pipeline's head sway (canonical metrics "
                        "do not see it; it moves the rendered head)")
    parser.add_argument("--energy-gain", type=float, help="gain of the energy baseline instead of fitting it")
    parser.add_argument("--max-lag", type=int, default=5)
    parser.add_argument("--csim-frames", type=int, default=8, help="frames per clip and method embedded for CSIM")
    parser.add_argument("--image-stride", type=int, default=2, help="PSNR / SSIM on every n-th frame")
    parser.add_argument("--max-seconds", type=float, help="evaluate only the first seconds of each clip")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for the small "
                        "landmark model on a busy CPU; more help SyncNet)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from pipeline.face import FaceAnalyzer

    videos = find_videos(args.clips)
    if not videos:
        raise SystemExit(f"No videos under {args.clips}.")
    holdout = {h.strip() for h in args.holdout.split(",") if h.strip()}
    only = {h.strip() for h in args.only.split(",") if h.strip()}
    if only:
        videos = [v for v in videos if is_held_out(v, args.clips, clip_name(v, args.clips), only)]
        if not videos:
            raise SystemExit(f"No video under {args.clips} matches --only {args.only}.")

    notes = []
    pipe = None
    checkpoint, named = _checkpoint(args.checkpoint)
    if checkpoint is not None and (checkpoint / "model_index.json").is_file():
        from pipeline.loading import load_pipeline

        pipe = load_pipeline(checkpoint, device=args.device)
        pipe.set_progress_bar_config(disable=True)
    # one landmark detector for the real videos, the photos and the rendered frames: the pipeline's when loaded
    analyzer = pipe.face_analyzer if pipe is not None else FaceAnalyzer()
    ctx = Context(analyzer=analyzer, embedder=FaceEmbedder(), warp=WarpRenderer(size=args.size), pipe=pipe,
                  steps=args.steps, guidance=args.guidance, seed=args.seed, head_motion=args.head_motion,
                  max_lag=args.max_lag, csim_frames=args.csim_frames, image_stride=args.image_stride,
                  diffusion_seconds=args.diffusion_seconds, device=args.device)
    if pipe is not None:
        cfg = ctx.pipe.landmark_denoiser.config
        notes.append(f"model `{checkpoint}` (denoiser window {cfg.window}, d_model {cfg.d_model}, audio features "
                     f"{ctx.pipe.config.audio_features}): DDIM {args.steps} steps, guidance {args.guidance:g}, seed "
                     f"{args.seed}, head motion {args.head_motion:g}.")
    elif named:
        raise SystemExit(f"{checkpoint} is not a saved pipeline (no model_index.json).")
    else:
        notes.append(f"model: skipped (no pipeline at {checkpoint}).")
    if args.no_diffusion:
        notes.append("model+diffusion: left out (--no-diffusion).")
    elif ctx.pipe is None:
        notes.append("model+diffusion: skipped (no landmark model).")
    else:
        folder = args.renderer_checkpoint or (checkpoint / "face_renderer")
        scheduler = args.renderer_scheduler or folder.parent / "renderer_scheduler"
        ctx.diffusion, why = load_diffusion_renderer(folder, scheduler, args.size, args.device, args.seed)
        notes.append(f"model+diffusion: {why}." if ctx.diffusion is not None else f"model+diffusion: skipped: {why}.")
    if args.syncnet is not None:
        ctx.syncnet = load_syncnet(args.syncnet, args.device)
        notes.append(f"SyncNet weights `{args.syncnet}` (LSE over offsets -15..15 frames).")
    else:
        notes.append("LSE-D / LSE-C: skipped (no --syncnet weights given).")

    print(f"Loading {len(videos)} clips (landmarks of every real frame) ...", flush=True)
    clips: list[Clip] = []
    for video in videos:
        try:
            clip = load_clip(video, args.clips, analyzer, holdout, args.max_seconds)
        except (AudioError, InputError, NoFaceError) as exc:
            print(f"  {video}: skipped: {exc}", flush=True)
            notes.append(f"{video}: skipped: {exc}")
            continue
        clips.append(clip)
        print(f"  {clip.name}: {clip.num_frames} frames at {clip.fps:g} fps{' (held out)' if clip.held_out else ''} "
              f"[{clip.load_s:.1f} s]", flush=True)
    if not clips:
        raise SystemExit("No clip could be loaded.")
    unused = holdout - {c.name for c in clips}
    if unused and not only:
        print(f"warning: --holdout entries matching no clip: {', '.join(sorted(unused))}")
    ctx.gain, how = energy_gain(clips, args.energy_gain)
    if ctx.diffusion is not None:
        held = {c.name for c in clips if c.held_out}
        ctx.diffusion_clips = held if args.diffusion_clips == "heldout" and held else None
        span = f"the first {args.diffusion_seconds:g} s of " if args.diffusion_seconds else ""
        which = "the held-out clips" if ctx.diffusion_clips else "every clip"
        notes.append(f"model+diffusion runs on {span}{which}; its means are over those clips and frames only"
                     + (f"; `{SAME_FRAMES}` scores the warp renderer on the same frames." if span else "."))
    notes.insert(0, f"{len(clips)} clips from `{args.clips}`, {sum(c.num_frames for c in clips)} frames; each clip's "
                 f"photo (ref.png or frame 0) driven by its own audio; renders {args.size}² crops.")
    notes.insert(1, f"energy baseline gain k = {ctx.gain:.4f} IOD, {how}; static and energy start from the photo's "
                 "face.")

    per_clip: dict[str, dict] = {}
    apertures: dict[str, dict] = {}
    timings: dict[str, dict] = {}
    for clip in clips:
        tick = time.perf_counter()
        per_clip[clip.name], apertures[clip.name], timing = evaluate_clip(ctx, clip)
        timing["load"] = clip.load_s
        timing["total"] = time.perf_counter() - tick + clip.load_s
        timings[clip.name] = timing
        model = per_clip[clip.name].get("model+warp", {})
        print(f"  {clip.name}: {timing['total']:.1f} s ({clip.num_frames / timing['total']:.1f} frames/s)"
              + (f"; model r@0 {model['r0']:.3f}, video r@0 {model.get('v_r0', float('nan')):.3f}" if model else ""),
              flush=True)

    total = time.perf_counter() - started
    per_frame = total / sum(c.num_frames for c in clips)
    notes.append(f"runtime {total:.0f} s in all, {total / len(clips):.1f} s per clip on average "
                 f"({per_frame * 1000:.0f} ms per real frame; device {args.device}).")
    text = report(per_clip, clips, notes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.md").write_text(text)
    names = [c.name for c in clips]
    held = [c.name for c in clips if c.held_out]
    payload = {
        "clips_folder": str(args.clips), "notes": notes, "metric_notes": METRIC_NOTES, "psnr_cap": PSNR_CAP,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "energy_gain": ctx.gain, "energy_gain_source": how,
        "mean": mean_metrics(per_clip, names), "mean_held_out": mean_metrics(per_clip, held) if held else None,
        "clips": {c.name: {"held_out": c.held_out, "frames": c.num_frames, "fps": c.fps, "video": str(c.video),
                           "missing_real_frames": c.missing_frames, "timing_s": timings[c.name],
                           "methods": per_clip[c.name],
                           "apertures": {k: np.round(v, 4).tolist() for k, v in apertures[c.name].items()}}
                  for c in clips},
        "runtime_s": total,
    }
    (args.out / "quality.json").write_text(json.dumps(payload, indent=1))
    plot_mouths(apertures, {c.name: c.fps for c in clips}, args.out / "mouth.png")
    plot_bars(mean_metrics(per_clip, held or names), args.out / "metrics.png",
              f"mean over the {len(held)} held-out clips" if held else f"mean over {len(names)} clips")
    print(text)
    print(f"Wrote {args.out}/quality.md, quality.json, mouth.png, metrics.png in {total:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
