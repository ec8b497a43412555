"""TalkingFacePipeline: a portrait photo and a speech recording in, a lip-synced talking-face video out.

The stages are public methods so that a UI can stop between them (show and edit the landmarks, then render):

1. :meth:`TalkingFacePipeline.prepare` — the photo's face and 68 landmarks, the speech at 16 kHz, its features;
2. :meth:`TalkingFacePipeline.generate_landmarks` — the landmark diffusion model turns speech into a track;
3. :meth:`TalkingFacePipeline.render` — a renderer turns photo + track into frames or an mp4: the warp renderer
   (fast, everywhere) or, when the checkpoint has one, the diffusion renderer (the warp frames with the mouth
   repainted by a landmark-conditioned diffusion model; see :mod:`pipeline.render.diffusion`).
   :meth:`TalkingFacePipeline.render_chunks` writes the mp4 step by step, so a caller can stop it between chunks.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers import SchedulerMixin
from diffusers.utils import BaseOutput, replace_example_docstring
from tqdm.auto import tqdm

from .audio import AudioInput, load_audio, make_audio_features, num_video_frames
from .canonical import from_canonical, to_canonical
from .defaults import DEFAULT_BLINK_RATE, DEFAULT_MOUTH_BLEND, DEFAULT_STEPS, MAX_GUIDANCE, MAX_STEPS
from .edits import add_blinks, add_head_motion
from .errors import InputError
from .face import FaceAnalyzer, FaceDetection
from .images import ImageInput, load_image
from .landmarks import LandmarkTrack, belongs_to, blend_mouth_opening, closed_mouth, face_points, retarget
from .models.face_renderer import LandmarkFaceRenderer
from .models.landmark_denoiser import LandmarkDenoiser
from .models.mouth_regressor import MouthOpeningRegressor
from .motion import generate_motion
from .regions import LOWER_FACE, NUM_POINTS, UPPER_FACE
from .render.diffusion import DiffusionRenderer
from .render.export import iter_render_to_mp4
from .render.warp import WarpRenderer
from .threads import stage_threads

logger = logging.getLogger(__name__)

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from pipeline import TalkingFacePipeline
        >>> import torch

        >>> pipe = TalkingFacePipeline.from_pretrained("checkpoints")
        >>> out = pipe(image="examples/astronaut.png", audio="examples/speech.wav",
        ...            generator=torch.Generator().manual_seed(0), output_type="mp4", output_path="talk.mp4")
        >>> out.landmarks.save("talk.json")  # edit it, then: pipe(image=..., audio=..., landmarks=edited)
        ```
"""

OutputType = str  # "np" | "pil" | "mp4"
#: Renderer names accepted by :meth:`TalkingFacePipeline.render`.
RENDERERS = ("warp", "diffusion")
#: The diffusion renderer's settings, chosen on the held-out people (bench/cross_identity.py, README): the last
#: step of an 8-step DDIM schedule (one model call a frame, at t = 0: the warp crop barely noised; the last two or
#: four steps kept the identity less well), no previous frame shown to the model (its own previous outputs made the
#: mouth less accurate and the video no steadier), and the refined pixels taken only on the lips and the skin
#: around them, fading out within 0.08 inter-ocular distances of them (0.25 kept the identity less well), not inside
#: the mouth (its teeth stay the warp frame's: the model's lighter gap read as a smaller opening on the GRID faces).
DIFFUSION_SETTINGS = {"num_inference_steps": 8, "strength": 0.125, "previous_noise": None, "mouth_margin": 0.08,
                      "keep_mouth_inside": True}
#: Frames per chunk of :meth:`TalkingFacePipeline.render_chunks`: a few seconds of work each (the diffusion
#: renderer takes about 0.06 s a frame on a CPU), so progress is frequent and a stop takes effect soon.
CHUNK_FRAMES = {"warp": 32, "diffusion": 8}


class RenderStep(NamedTuple):
    """Progress of :meth:`TalkingFacePipeline.render_chunks` after one chunk."""

    done: int  # frames written so far
    total: int  # frames in all
    segment: Path | None = None  # the chunk alone, as a playable mp4 (when asked for)


@dataclass
class TalkingFaceInputs:
    """What :meth:`TalkingFacePipeline.prepare` found in the user's photo and recording."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    face: FaceDetection
    audio: np.ndarray  # (N,) float32, 16 kHz mono
    fps: float

    @property
    def num_frames(self) -> int:
        return num_video_frames(len(self.audio), self.fps)

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.image.shape[1], self.image.shape[0])

    @property
    def points3d(self) -> np.ndarray:
        """The face's 68 points in 3D ``(68, 3)`` (pixels; ``face.landmarks`` are their x, y)."""
        return face_points(self.face)


@dataclass
class TalkingFacePipelineOutput(BaseOutput):
    """``frames``: ``(T, S, S, 3)`` uint8 array, a list of PIL images, or the path of the mp4 (``output_type``);
    ``landmarks``: the track that was rendered; ``fps``; ``audio``: the 16 kHz mono speech."""

    frames: np.ndarray | list[PIL.Image.Image] | str
    landmarks: LandmarkTrack
    fps: float
    audio: np.ndarray


def _mouth_share(value: Any) -> float:
    """``value`` as a share of the mouth opening (0..1); :class:`InputError` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InputError(f"mouth_blend must be between 0 and 1, not {value!r}.")
    return float(value)


def _for_recording(track: LandmarkTrack, inputs: TalkingFaceInputs) -> LandmarkTrack:
    """``track`` at the recording's frame rate (a 30 fps video's motion at its own speed), cut to the recording's
    frames; no work is done on frames past it."""
    needed = math.ceil(inputs.num_frames * track.fps / inputs.fps) + 1
    track = track.replace(track.frames[:needed]).at_fps(inputs.fps)
    return track.replace(track.frames[: inputs.num_frames])


class TalkingFacePipeline(DiffusionPipeline):
    r"""
    Audio-driven talking face: landmark diffusion (AToM-Net style) followed by landmark-driven rendering.

    Parameters:
        landmark_denoiser ([`LandmarkDenoiser`]): denoises windows of canonical landmark motion.
        scheduler ([`SchedulerMixin`]): a diffusers scheduler for sampling (DDIM or DPM-Solver).
        face_renderer ([`LandmarkFaceRenderer`], *optional*): the diffusion renderer's model; without it only the
            warp renderer is available.
        renderer_scheduler ([`SchedulerMixin`], *optional*): the diffusion renderer's sampling scheduler (DDIM).
        mouth_regressor ([`MouthOpeningRegressor`], *optional*): the mouth opening as a deterministic function of the
            speech; the generated mouth opening is moved ``mouth_blend`` of the way to it.
        fps (`float`): video frame rate.
        audio_features (`str`): "logmel" or the HuBERT / wav2vec2 model id or folder the denoiser was trained on.
        landmark_backend (`str`): "mesh" (MediaPipe's face mesh, the default) or the optional "dlib" / "fan".
        mouth_blend (`float`): share of the mouth opening taken from ``mouth_regressor`` (0: the sampled one alone).
    """

    model_cpu_offload_seq = "landmark_denoiser->face_renderer"
    _optional_components = ["face_renderer", "renderer_scheduler", "mouth_regressor"]
    #: What ``callback_on_step_end`` may see and replace: the landmark sampler's current window (1, W, 68, 2).
    _callback_tensor_inputs = ["sample"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """diffusers' ``from_pretrained``, made safe for files from anywhere: a Hub repo is fetched with only the files
        a pipeline needs (``revision`` and ``local_files_only`` are honoured), ``model_index.json`` may name only this
        pipeline's components (:func:`pipeline.loading.check_model_index`), and weights load from safetensors only
        (``use_safetensors=False`` is refused)."""
        from .loading import check_model_index, resolve_checkpoint

        if kwargs.get("use_safetensors", True) is not True:
            raise ValueError("TalkingFacePipeline loads safetensors weights only (pickled weights can run code).")
        folder = resolve_checkpoint(pretrained_model_name_or_path, revision=kwargs.pop("revision", None),
                                    local_files_only=kwargs.get("local_files_only", False))
        check_model_index(folder)
        return super().from_pretrained(str(folder), **{**kwargs, "use_safetensors": True})

    def __init__(
        self,
        landmark_denoiser: LandmarkDenoiser,
        scheduler: SchedulerMixin,
        face_renderer: LandmarkFaceRenderer | None = None,
        renderer_scheduler: SchedulerMixin | None = None,
        mouth_regressor: MouthOpeningRegressor | None = None,
        fps: float = 25.0,
        audio_features: str = "logmel",
        landmark_backend: str = "mesh",
        mouth_blend: float = DEFAULT_MOUTH_BLEND,
    ) -> None:
        super().__init__()
        mouth_blend = _mouth_share(mouth_blend)
        self.register_modules(landmark_denoiser=landmark_denoiser, scheduler=scheduler, face_renderer=face_renderer,
                              renderer_scheduler=renderer_scheduler, mouth_regressor=mouth_regressor)
        self.register_to_config(fps=fps, audio_features=audio_features, landmark_backend=landmark_backend,
                                mouth_blend=mouth_blend)
        self._lazy_lock = threading.Lock()
        self._face_analyzer: FaceAnalyzer | None = None
        self._audio_featurizer = None

    # --- shared helpers, built on first use ---------------------------------------------------------
    @property
    def face_analyzer(self) -> FaceAnalyzer:
        with self._lazy_lock:
            if self._face_analyzer is None:
                self._face_analyzer = FaceAnalyzer(self.config.landmark_backend)
            return self._face_analyzer

    @property
    def audio_featurizer(self):
        with self._lazy_lock:
            if self._audio_featurizer is None:
                spec = self.config.audio_features
                kwargs = {} if spec == "logmel" else {"device": str(self.device)}
                self._audio_featurizer = make_audio_features(spec, **kwargs)
            return self._audio_featurizer

    def stage_progress_bar(self, total: int, stage: str) -> tqdm:
        """Like ``self.progress_bar(total=...)`` (honouring ``set_progress_bar_config``) but named after the stage,
        so UIs that mirror tqdm (Gradio's ``track_tqdm``) show it."""
        config = {"desc": stage, **getattr(self, "_progress_bar_config", {})}
        return tqdm(total=total, **config)

    # --- 1. inputs ------------------------------------------------------------------------------------
    def check_inputs(self, num_inference_steps: int, guidance_scale: float, output_type: str, size: int) -> None:
        self.check_sampling(num_inference_steps, guidance_scale)
        if output_type not in ("np", "pil", "mp4"):
            raise InputError(f"output_type must be 'np', 'pil' or 'mp4', not {output_type!r}.")
        if size not in (256, 512):
            raise InputError(f"size must be 256 or 512, not {size!r}.")

    @staticmethod
    def check_sampling(num_inference_steps: int, guidance_scale: float) -> None:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) \
                or not 1 <= num_inference_steps <= MAX_STEPS:
            raise InputError(f"num_inference_steps must be an integer from 1 to {MAX_STEPS}, not "
                             f"{num_inference_steps!r}.")
        if not 0.0 <= guidance_scale <= MAX_GUIDANCE:  # False for NaN too
            raise InputError(f"guidance_scale must be between 0 and {MAX_GUIDANCE:g}, not {guidance_scale!r}.")

    def prepare(self, image: ImageInput, audio: AudioInput | np.ndarray) -> TalkingFaceInputs:
        """Load the photo and find its face; load the speech (16 kHz mono). Raises :class:`InputError`."""
        rgb = load_image(image)
        with stage_threads("face"):
            face = self.face_analyzer.detect(rgb)
        if face.message:
            logger.info(face.message)
        samples = np.asarray(audio, dtype=np.float32) if isinstance(audio, np.ndarray) else load_audio(audio)
        return TalkingFaceInputs(rgb, face, samples, float(self.config.fps))

    # --- 2. landmarks -------------------------------------------------------------------------------
    def generate_landmarks(
        self,
        inputs: TalkingFaceInputs,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        head_motion: float = 1.0,
        blink_rate: float | None = DEFAULT_BLINK_RATE,
        callback_on_step_end: Callable[..., Any] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("sample",),
        mouth_blend: float | None = None,
    ) -> LandmarkTrack:
        """The speech-driven landmark track for the prepared face, in the photo's pixel space.

        The denoiser generates canonical motion (lips and jaw from the audio; blinks, brows and small
        expression changes on their own); ``head_motion`` scales an added natural head sway and
        ``blink_rate`` (per minute; by default :data:`~pipeline.defaults.DEFAULT_BLINK_RATE`, as people blink; 0 or
        None for none) adds blinks of 240 ms at natural random times: the model alone hardly blinks.
        ``mouth_blend`` (0..1; None: the config's) is the share of the mouth opening taken from the mouth regressor.
        """
        self.check_sampling(num_inference_steps, guidance_scale)
        self.check_callback_inputs(callback_on_step_end_tensor_inputs)
        share = self.check_mouth_blend(mouth_blend)
        with stage_threads("landmarks"):
            track = self._generate_landmarks(inputs, num_inference_steps, guidance_scale, generator, head_motion,
                                             blink_rate, callback_on_step_end, callback_on_step_end_tensor_inputs,
                                             share)
        self.maybe_free_model_hooks()
        return track

    def check_mouth_blend(self, mouth_blend: float | None) -> float:
        """The share of the mouth opening to take from the regressor: ``mouth_blend``, or the config's for None."""
        return _mouth_share(self.config.mouth_blend if mouth_blend is None else mouth_blend)

    def check_callback_inputs(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in self._callback_tensor_inputs]
        if unknown:
            raise InputError(f"callback_on_step_end_tensor_inputs may only name {self._callback_tensor_inputs}, "
                             f"not {unknown}.")

    def _generate_landmarks(self, inputs: TalkingFaceInputs, num_inference_steps: int, guidance_scale: float,
                            generator: torch.Generator | None, head_motion: float, blink_rate: float | None,
                            callback_on_step_end: Callable[..., Any] | None,
                            callback_tensor_inputs: Sequence[str], mouth_blend: float) -> LandmarkTrack:
        features = self.audio_featurizer(inputs.audio, fps=inputs.fps)  # (T, D)
        face = inputs.points3d
        neutral, to_canon = to_canonical(face)  # (68, 3), (3, 4)
        neutral = closed_mouth(neutral)  # the motion starts from a closed mouth, whatever the photo's
        scheduler = type(self.scheduler).from_config(self.scheduler.config)  # per call: safe across threads
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
        bars = []  # the progress bar opens at the first step, when the number of steps is known

        def on_step(done: int, total: int, t: torch.Tensor, sample: torch.Tensor) -> torch.Tensor | None:
            if not bars:
                bars.append(self.stage_progress_bar(total, "landmarks"))
            bars[0].update(done - bars[0].n)
            if callback_on_step_end is None:
                return None
            step_tensors = {"sample": sample}
            outputs = callback_on_step_end(self, done - 1, t, {k: step_tensors[k] for k in callback_tensor_inputs})
            return (outputs or {}).get("sample")  # diffusers' contract: returned tensors replace the pipeline's

        motion = generate_motion(
            self.landmark_denoiser, scheduler, features, neutral[:, :2], num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, generator=generator, on_step=on_step,
        )
        for bar in bars:
            bar.close()
        motion = self.blend_mouth(motion, neutral[:, :2], inputs, mouth_blend)
        motion = np.concatenate([motion, np.zeros(motion.shape[:-1] + (1,))], axis=-1)  # (T, 68, 3): x, y only
        frames = from_canonical(neutral[None] + motion, to_canon)
        track = LandmarkTrack(frames, inputs.fps, inputs.image_size, reference=face,
                              info={"source": "landmark-diffusion", "steps": num_inference_steps,
                                    "guidance": guidance_scale, "seed": seed, **self._blend_info(mouth_blend)})
        if head_motion:
            track = add_head_motion(track, head_motion, seed)
        if blink_rate:
            track = add_blinks(track, rate_per_minute=blink_rate, seed=seed)
        return track

    def dub_landmarks(
        self,
        inputs: TalkingFaceInputs,
        driving: LandmarkTrack,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        mouth_blend: float | None = None,
    ) -> LandmarkTrack:
        """Video-driven dubbing: the head pose, eyes, brows and nose of ``driving`` (a track extracted from a video
        of anyone, retargeted onto the photo's face), with mouth and jaw generated from the speech under them.

        The landmark model completes the face (DiffTalker-style): the upper face is given on every frame and the
        lower face (:data:`~pipeline.regions.LOWER_FACE`) is sampled to follow the audio and agree with it. The
        driving track is brought to the pipeline's frame rate, then cut to the recording, or holds its last frame
        where it is shorter. ``info`` records where each point came from: ``"generated_points"`` (the model's) and
        ``"driven_points"`` (the video's). ``mouth_blend``: as for :meth:`generate_landmarks`."""
        self.check_sampling(num_inference_steps, guidance_scale)
        share = self.check_mouth_blend(mouth_blend)
        with stage_threads("landmarks"):
            n = inputs.num_frames
            driven = retarget(_for_recording(driving, inputs), inputs.points3d, inputs.image_size).frames
            if len(driven) < n:
                driven = np.concatenate([driven, np.repeat(driven[-1:], n - len(driven), axis=0)])
            canon, to_canon = to_canonical(driven)  # (T, 68, 3), (T, 3, 4)
            neutral = closed_mouth(to_canonical(inputs.points3d)[0])  # (68, 3), as retargeting has it
            lower = list(LOWER_FACE)
            known_mask = np.zeros((n, NUM_POINTS), dtype=bool)
            known_mask[:, list(UPPER_FACE)] = True
            motion = generate_motion(
                self.landmark_denoiser, type(self.scheduler).from_config(self.scheduler.config),
                self.audio_featurizer(inputs.audio, fps=inputs.fps), neutral[:, :2],
                num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, generator=generator,
                known=canon[..., :2] - neutral[None, :, :2], known_mask=known_mask,
            )
            motion = self.blend_mouth(motion, neutral[:, :2], inputs, share)
            canon[:, lower, :2] = neutral[None, lower, :2] + motion[:, lower]
            track = LandmarkTrack(from_canonical(canon, to_canon), inputs.fps, inputs.image_size,
                                  reference=inputs.points3d,
                                  info={"source": "dubbing", "steps": num_inference_steps, "guidance": guidance_scale,
                                        "generated_points": lower, "driven_points": list(UPPER_FACE),
                                        **self._blend_info(share)})
        self.maybe_free_model_hooks()
        return track

    def _blend_info(self, share: float) -> dict[str, float]:
        """What a track records of the mouth blend (nothing without a regressor: no blend took place)."""
        return {} if self.mouth_regressor is None else {"mouth_blend": share}

    def blend_mouth(self, motion: np.ndarray, neutral: np.ndarray, inputs: TalkingFaceInputs,
                    share: float) -> np.ndarray:
        """Generated ``motion`` ``(T, 68, 2)`` (offsets from the upright ``neutral`` face) with its mouth opening
        moved ``share`` of the way to the :class:`MouthOpeningRegressor`'s for the speech (as it was without a
        regressor)."""
        if self.mouth_regressor is None or not share:
            return motion
        with stage_threads("speech"):
            opening = self.mouth_regressor.predict(inputs.audio, inputs.fps)[: len(motion)]
        return blend_mouth_opening(motion, neutral, opening, share)

    # --- 3. video -------------------------------------------------------------------------------------
    def fitted_track(self, track: LandmarkTrack, inputs: TalkingFaceInputs) -> LandmarkTrack:
        """The track for this photo and recording: at the pipeline's frame rate, retargeted when it was made for
        another face, cut or extended (holding the face at rest) to the recording's length."""
        face = inputs.points3d
        track = _for_recording(track, inputs)
        if not belongs_to(track, face, inputs.image_size):
            track = retarget(track, face, inputs.image_size)
        frames = track.frames
        missing = inputs.num_frames - len(frames)
        if missing:
            frames = np.concatenate([frames, np.repeat(face[None], missing, axis=0).astype(frames.dtype)])
        return track.replace(frames)

    def fit_track(self, track: LandmarkTrack, inputs: TalkingFaceInputs) -> np.ndarray:
        """The renderers' input: the image points ``(T, 68, 2)`` of :meth:`fitted_track`."""
        return self.fitted_track(track, inputs).points2d

    @property
    def renderers(self) -> list[str]:
        """The renderers this pipeline can run: ``"warp"``, and ``"diffusion"`` when it has a face renderer."""
        has_diffusion = self.face_renderer is not None and self.renderer_scheduler is not None
        return list(RENDERERS) if has_diffusion else ["warp"]

    def make_renderer(self, renderer: str = "warp", size: int = 256, full: bool = False,
                      generator: torch.Generator | None = None) -> WarpRenderer | DiffusionRenderer:
        """A new renderer of this kind (each call its own, so concurrent renders do not share state); ``generator``
        draws the diffusion renderer's shared noise."""
        if renderer not in RENDERERS:
            raise InputError(f"renderer must be one of {', '.join(RENDERERS)}, not {renderer!r}.")
        if renderer not in self.renderers:
            raise InputError("This checkpoint has no diffusion renderer (face_renderer); use the warp renderer.")
        if renderer == "warp":
            return WarpRenderer(size=size, full=full)
        scheduler = type(self.renderer_scheduler).from_config(self.renderer_scheduler.config)  # per call
        return DiffusionRenderer(self.face_renderer, scheduler, size=size, full=full, generator=generator,
                                 **DIFFUSION_SETTINGS)

    def render_chunks(
        self,
        inputs: TalkingFaceInputs,
        track: LandmarkTrack,
        output_path: str | Path,
        size: int = 256,
        full: bool = False,
        renderer: str = "warp",
        generator: torch.Generator | None = None,
        segments: str | Path | None = None,
    ) -> Iterator[RenderStep]:
        """Render the photo driven by ``track`` into the mp4 ``output_path`` (with the speech), yielding a
        :class:`RenderStep` (frames written, total, the chunk's own playable segment when a ``segments`` folder is
        given) after each chunk. The file is complete when the iterator is exhausted; closing it earlier stops the
        work at the next chunk and deletes the partial file."""
        frames = self.fit_track(track, inputs)
        drawer = self.make_renderer(renderer, size, full, generator)
        context = drawer.prepare(inputs.image, inputs.face.landmarks)
        bar = self.stage_progress_bar(len(frames), "render")
        chunks = iter_render_to_mp4(drawer, context, frames, output_path, inputs.fps, inputs.audio,
                                    CHUNK_FRAMES[renderer], segments)
        try:
            while True:
                with stage_threads(renderer):  # while rendering only, not while the caller has the chunk
                    step = next(chunks, None)
                if step is None:
                    return
                done, segment = step
                bar.update(done - bar.n)
                yield RenderStep(done, len(frames), segment)
        finally:
            chunks.close()
            bar.close()
            self.maybe_free_model_hooks()

    def render(
        self,
        inputs: TalkingFaceInputs,
        track: LandmarkTrack,
        size: int = 256,
        full: bool = False,
        output_type: OutputType = "np",
        output_path: str | Path | None = None,
        renderer: str = "warp",
        generator: torch.Generator | None = None,
    ) -> np.ndarray | list[PIL.Image.Image] | str:
        """Render the photo driven by ``track`` with ``renderer`` (``"warp"`` or ``"diffusion"``, see
        :attr:`renderers`). ``output_type="mp4"`` streams frames to ``output_path`` (a new temporary file when not
        given) in chunks, so memory does not grow with length, and returns its path."""
        if output_type == "mp4":
            if output_path is None:
                output_path = tempfile.NamedTemporaryFile(suffix=".mp4", delete=False).name
            for _ in self.render_chunks(inputs, track, output_path, size, full, renderer, generator):
                pass
            return str(output_path)
        frames = self.fit_track(track, inputs)
        drawer = self.make_renderer(renderer, size, full, generator)
        context = drawer.prepare(inputs.image, inputs.face.landmarks)
        with self.stage_progress_bar(len(frames), "render") as bar, stage_threads(renderer):
            video = drawer.render(context, frames)
            bar.update(len(frames))
        self.maybe_free_model_hooks()
        return [PIL.Image.fromarray(f) for f in video] if output_type == "pil" else video

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        image: ImageInput,
        audio: AudioInput | np.ndarray,
        size: int = 256,
        full: bool = False,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        landmarks: LandmarkTrack | None = None,
        head_motion: float = 1.0,
        blink_rate: float | None = DEFAULT_BLINK_RATE,
        output_type: OutputType = "np",
        output_path: str | Path | None = None,
        renderer: str = "warp",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., Any] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("sample",),
        mouth_blend: float | None = None,
    ) -> TalkingFacePipelineOutput | tuple:
        r"""
        Animate ``image`` with ``audio``.

        Args:
            image: the portrait (path, bytes, PIL image or RGB array).
            audio: the speech (path, Gradio's ``(rate, samples)`` or a 16 kHz mono array).
            size: side of the square face crop (256 or 512); with ``full`` the whole photo is kept instead.
            num_inference_steps, guidance_scale, generator: sampling of the landmark diffusion model.
            landmarks: a track to render as given (e.g. edited); skips the landmark model.
            head_motion, blink_rate, mouth_blend: see :meth:`generate_landmarks`.
            output_type: "np" (frames array), "pil" (list of images) or "mp4" (written to ``output_path``).
            renderer: "warp" (fast, CPU) or "diffusion" (when the checkpoint has a face renderer; see
                :attr:`renderers`); ``generator`` also draws the diffusion renderer's noise.
            return_dict: return a [`TalkingFacePipelineOutput`] instead of a tuple.
            callback_on_step_end: called as ``callback(pipe, step, timestep, callback_kwargs)`` after each denoising
                step of the landmark model, diffusers' contract: ``callback_kwargs`` holds the tensors named in
                ``callback_on_step_end_tensor_inputs`` (of :attr:`_callback_tensor_inputs`: ``"sample"``, the current
                window ``(1, W, 68, 2)``), and a tensor in the dict it returns replaces the pipeline's.

        Examples:
        """
        # 1. Check inputs
        self.check_inputs(num_inference_steps, guidance_scale, output_type, size)
        self.check_callback_inputs(callback_on_step_end_tensor_inputs)
        self.check_mouth_blend(mouth_blend)
        # 2. Face and speech
        inputs = self.prepare(image, audio)
        # 3. Landmark track
        if landmarks is None:
            landmarks = self.generate_landmarks(inputs, num_inference_steps, guidance_scale, generator,
                                                head_motion, blink_rate, callback_on_step_end,
                                                callback_on_step_end_tensor_inputs, mouth_blend)
        # 4. Frames
        frames = self.render(inputs, landmarks, size, full, output_type, output_path, renderer, generator)
        if not return_dict:
            return (frames, landmarks)
        return TalkingFacePipelineOutput(frames=frames, landmarks=landmarks, fps=inputs.fps, audio=inputs.audio)

