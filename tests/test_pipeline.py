"""TalkingFacePipeline fast tests with tiny components (diffusers style)."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from diffusers import DDIMScheduler
from PIL import Image

from pipeline import InputError, LandmarkTrack, TalkingFacePipeline
from pipeline.cli import main
from pipeline.loading import resolve_checkpoint
from pipeline.pipeline_talking_face import CHUNK_FRAMES
from tests.conftest import get_dummy_components, speechlike
from tests.test_video import ffprobe_text


def _run(pipe, media, seed=0, **kw):
    return pipe(image=media / "photo.png", audio=media / "speech.wav", num_inference_steps=2,
                generator=torch.Generator().manual_seed(seed), **kw)


def test_outputs_and_shapes(pipe, media):
    out = _run(pipe, media)
    assert out.frames.shape == (38, 256, 256, 3) and out.frames.dtype == np.uint8
    assert out.landmarks.num_frames == 38 and out.landmarks.image_size == (512, 512) and out.fps == 25
    assert out.audio.shape == (24000,)
    pil = _run(pipe, media, output_type="pil", size=512)
    assert len(pil.frames) == 38 and pil.frames[0].size == (512, 512)
    frames, track = _run(pipe, media, return_dict=False)
    assert np.array_equal(frames, out.frames) and np.allclose(track.frames, out.landmarks.frames)
    assert out["landmarks"] is out.landmarks  # BaseOutput is indexable by key


def test_determinism_and_variation(pipe, media):
    a, b, c = (_run(pipe, media, seed=s).landmarks.frames for s in (0, 0, 1))
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_save_load_round_trip(pipe, media, tmp_path):
    pipe.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model_index.json").is_file()
    again = TalkingFacePipeline.from_pretrained(tmp_path / "ckpt")
    again.set_progress_bar_config(disable=True)
    assert np.allclose(_run(again, media).landmarks.frames, _run(pipe, media).landmarks.frames, atol=1e-5)


def test_landmarks_pass_through(pipe, media, astronaut_landmarks):
    opened = np.repeat(astronaut_landmarks[None], 38, axis=0)
    opened[:, 57:60, 1] += 12
    opened[:, 65:68, 1] += 12
    track = LandmarkTrack(opened, 25, (512, 512), reference=astronaut_landmarks)
    steps = []
    out = _run(pipe, media, landmarks=track, callback_on_step_end=lambda *a: steps.append(a[1]))
    assert steps == [] and out.landmarks is track  # the landmark model did not run
    inputs = pipe.prepare(media / "photo.png", media / "speech.wav")
    assert np.array_equal(out.frames, pipe.render(inputs, track))


def test_callbacks_and_progress(pipe, media):
    """diffusers' callback_on_step_end contract: (pipe, step, timestep, tensors asked for), and tensors returned
    replace the pipeline's."""
    seen = []

    def watch(p, i, t, kwargs):
        seen.append((i, int(t), sorted(kwargs), tuple(kwargs["sample"].shape)))
        return kwargs

    _run(pipe, media, callback_on_step_end=watch)
    assert [s[0] for s in seen] == sorted(s[0] for s in seen) and seen[0][0] == 0
    assert all(names == ["sample"] and shape == (1, 16, 68, 2) for _, _, names, shape in seen)
    assert seen[0][1] > seen[1][1]  # real, decreasing timesteps

    def flatten(p, i, t, kwargs):
        return {"sample": torch.zeros_like(kwargs["sample"])}  # no motion at all, whatever the seed

    a, b, c = (_run(pipe, media, seed=s, head_motion=0.0, callback_on_step_end=cb).landmarks.frames
               for s, cb in ((0, flatten), (1, flatten), (1, None)))
    assert np.array_equal(a, b) and not np.allclose(b, c)
    with pytest.raises(InputError, match="callback_on_step_end_tensor_inputs"):
        _run(pipe, media, callback_on_step_end=watch, callback_on_step_end_tensor_inputs=["latents"])


def test_mp4_streaming_matches_frames(pipe, media, tmp_path):
    """The mp4 path renders in chunks; decoded, it equals the all-at-once frames up to compression."""
    from pipeline.video import iter_video_frames

    long_audio = tmp_path / "long.wav"
    sf.write(long_audio, speechlike(6.0), 16000)  # 150 frames: three render chunks
    kw = dict(image=media / "photo.png", audio=long_audio, num_inference_steps=2)
    at_once = pipe(**kw, generator=torch.Generator().manual_seed(0)).frames
    path = pipe(**kw, generator=torch.Generator().manual_seed(0), output_type="mp4",
                output_path=tmp_path / "o.mp4").frames
    decoded = np.stack(list(iter_video_frames(path)))
    assert decoded.shape == at_once.shape
    mse = np.mean((decoded.astype(float) - at_once.astype(float)) ** 2, axis=(1, 2, 3))
    psnr = 10 * np.log10(255**2 / mse)
    assert psnr.min() > 30  # no frame is off: chunk boundaries (64, 128) included
    assert "aac" in ffprobe_text(path)


def test_bad_inputs(pipe, media, tmp_path):
    Image.new("RGB", (200, 200), (90, 120, 150)).save(tmp_path / "wall.png")
    with pytest.raises(InputError, match="No face"):
        pipe(image=tmp_path / "wall.png", audio=media / "speech.wav")
    with pytest.raises(InputError, match="output_type"):
        _run(pipe, media, output_type="gif")
    with pytest.raises(InputError, match="size"):
        _run(pipe, media, size=300)


def test_resolve_checkpoint_folder_and_hub_cache(pipe, tmp_path, monkeypatch):
    pipe.save_pretrained(tmp_path / "ckpt")
    assert resolve_checkpoint(tmp_path / "ckpt") == tmp_path / "ckpt"
    with pytest.raises(RuntimeError, match="model_index.json"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(RuntimeError, match="neither a folder nor a Hub repo id"):
        resolve_checkpoint("not a/repo/id")
    # A Hub repo id (dots allowed, as on the Hub) resolves through snapshot_download at the asked revision; here
    # from a local cache laid out as the Hub client does: "main" and the tag "v1" point to two snapshots.
    repo = tmp_path / "hub" / "models--someone--talking.face-v1.0"
    for name, commit in (("main", "0" * 40), ("v1", "1" * 40)):
        shutil.copytree(tmp_path / "ckpt", repo / "snapshots" / commit)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / name).write_text(commit)
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    folder = resolve_checkpoint("someone/talking.face-v1.0", local_files_only=True)
    assert folder.name == "0" * 40 and (folder / "model_index.json").is_file()
    assert resolve_checkpoint("someone/talking.face-v1.0", revision="v1", local_files_only=True).name == "1" * 40
    loaded = TalkingFacePipeline.from_pretrained("someone/talking.face-v1.0", revision="v1", local_files_only=True)
    assert loaded.landmark_denoiser.config.window == 16

    # Only what a pipeline needs is downloaded: index, configs and safetensors (no pickles, no code).
    import huggingface_hub

    asked = {}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: asked.update(kw) or str(folder))
    resolve_checkpoint("someone/other", revision="abc")
    assert asked["revision"] == "abc" and "*/*.safetensors" in asked["allow_patterns"]
    assert not any(p.endswith((".bin", ".py", ".pt", ".ckpt", ".pkl")) for p in asked["allow_patterns"])


def test_cli_landmarks_and_generate(pipe, media, tmp_path, capsys):
    pipe.save_pretrained(tmp_path / "ckpt")
    ckpt = str(tmp_path / "ckpt")
    assert main(["landmarks", "--image", str(media / "photo.png"), "--audio", str(media / "speech.wav"),
                 "-o", str(tmp_path / "t.json"), "--checkpoint", ckpt, "--steps", "2", "-q"]) == 0
    assert LandmarkTrack.load(tmp_path / "t.json").num_frames == 38
    assert main(["generate", "--image", str(media / "photo.png"), "--audio", str(media / "speech.wav"),
                 "-o", str(tmp_path / "g.mp4"), "--checkpoint", ckpt, "--steps", "2",
                 "--landmarks-out", str(tmp_path / "g.json"), "-q"]) == 0
    assert "256x256" in ffprobe_text(tmp_path / "g.mp4") and (tmp_path / "g.json").is_file()


def test_cli_batch_reports_failures_and_goes_on(pipe, media, tmp_path, capsys):
    pipe.save_pretrained(tmp_path / "ckpt")
    Image.new("RGB", (200, 200), (90, 120, 150)).save(tmp_path / "wall.png")
    (tmp_path / "pairs.csv").write_text(
        f"image,audio,output\n{media / 'photo.png'},{media / 'speech.wav'},one.mp4\n"
        f"wall.png,{media / 'speech.wav'},two.mp4\n"
    )
    code = main(["generate", "--batch", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "out"),
                 "--checkpoint", str(tmp_path / "ckpt"), "--steps", "2", "-q"])
    text = capsys.readouterr().out
    assert code == 1 and "1 of 2 done; 1 failed" in text and "wall.png: No face" in text
    assert (tmp_path / "out" / "one.mp4").is_file() and not (tmp_path / "out" / "two.mp4").exists()


# --- the diffusion renderer as a pipeline component ----------------------------------------------------


@pytest.fixture(scope="module")
def diffusion_pipe() -> TalkingFacePipeline:
    from tests.test_face_renderer import tiny_model

    components = get_dummy_components()
    pipe = TalkingFacePipeline(**components, face_renderer=tiny_model().eval(),
                               renderer_scheduler=DDIMScheduler.from_config(components["scheduler"].config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_diffusion_renderer_repaints_only_the_lower_face(diffusion_pipe, pipe, media, astronaut_landmarks):
    assert pipe.renderers == ["warp"] and diffusion_pipe.renderers == ["warp", "diffusion"]
    inputs = diffusion_pipe.prepare(media / "photo.png", media / "speech.wav")
    opened = np.repeat(astronaut_landmarks[None], inputs.num_frames, axis=0)
    opened[:, 57:60, 1] += 10
    track = LandmarkTrack(opened, 25, (512, 512), reference=astronaut_landmarks)
    warp = diffusion_pipe.render(inputs, track)
    diffusion = diffusion_pipe.render(inputs, track, renderer="diffusion", generator=torch.Generator().manual_seed(0))
    again = diffusion_pipe.render(inputs, track, renderer="diffusion", generator=torch.Generator().manual_seed(0))
    assert diffusion.shape == warp.shape == (38, 256, 256, 3) and np.array_equal(diffusion, again)
    to_crop = diffusion_pipe.make_renderer().prepare(inputs.image, inputs.face.landmarks).to_canvas
    below_eyes = int(np.ceil(max(to_crop[1] @ [x, y, 1.0] for x, y in astronaut_landmarks[36:48])))
    changed = np.abs(diffusion.astype(int) - warp.astype(int)).max(axis=(0, 2, 3)) > 0  # per row
    assert changed.any() and not changed[:below_eyes].any()  # the upper face is the warp frame's, pixel for pixel
    with pytest.raises(InputError, match="no diffusion renderer"):
        pipe.render(inputs, track, renderer="diffusion")
    with pytest.raises(InputError, match="renderer must be one of"):
        diffusion_pipe.render(inputs, track, renderer="gan")


def test_render_chunks_progress_and_stop(diffusion_pipe, media, tmp_path):
    from pipeline.video import iter_video_frames

    inputs = diffusion_pipe.prepare(media / "photo.png", media / "speech.wav")
    track = LandmarkTrack(np.repeat(inputs.face.landmarks[None], 38, axis=0), 25, inputs.image_size,
                          reference=inputs.face.landmarks)
    steps = list(diffusion_pipe.render_chunks(inputs, track, tmp_path / "all.mp4", renderer="diffusion"))
    assert [(s.done, s.total, s.segment) for s in steps] == [(8, 38, None), (16, 38, None), (24, 38, None),
                                                              (32, 38, None), (38, 38, None)]
    assert len(list(iter_video_frames(tmp_path / "all.mp4"))) == 38
    previous = (tmp_path / "all.mp4").read_bytes()
    chunks = diffusion_pipe.render_chunks(inputs, track, tmp_path / "all.mp4", renderer="diffusion")
    assert next(chunks)[:2] == (8, 38) and len(list(tmp_path.glob(".all.*.partial.mp4"))) == 1  # written beside
    chunks.close()  # what the app does when a render is cancelled
    assert (tmp_path / "all.mp4").read_bytes() == previous  # the earlier good video is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.mp4"]  # and nothing half-written is left


def test_render_chunks_also_write_each_chunk_as_a_playable_segment(pipe, media, tmp_path):
    """Live playback: each chunk as an mp4 of its own with its slice of the speech; together they are the video."""
    import imageio_ffmpeg

    from pipeline.video import iter_video_frames

    inputs = pipe.prepare(media / "photo.png", media / "speech.wav")
    track = pipe.generate_landmarks(inputs, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    steps = list(pipe.render_chunks(inputs, track, tmp_path / "all.mp4", segments=tmp_path / "live"))
    chunk = CHUNK_FRAMES["warp"]
    assert [s.segment.name for s in steps] == [f"segment-{i:04d}.mp4" for i in range(len(steps))]
    assert len(steps) == -(-inputs.num_frames // chunk)
    whole = np.stack(list(iter_video_frames(tmp_path / "all.mp4")))
    parts = [np.stack(list(iter_video_frames(s.segment))) for s in steps]
    assert [len(p) for p in parts] == [min(chunk, inputs.num_frames - i * chunk) for i in range(len(steps))]
    assert np.abs(np.concatenate(parts).astype(int) - whole).mean() < 3  # the same frames (each encoded apart)
    seconds = [imageio_ffmpeg.count_frames_and_secs(s.segment)[1] for s in steps]
    assert sum(seconds) == pytest.approx(len(inputs.audio) / 16000, abs=0.1)


def test_diffusion_renderer_saves_loads_and_runs_from_the_cli(diffusion_pipe, pipe, media, tmp_path, capsys):
    diffusion_pipe.save_pretrained(tmp_path / "ckpt")
    loaded = TalkingFacePipeline.from_pretrained(tmp_path / "ckpt")
    assert loaded.renderers == ["warp", "diffusion"]
    assert torch.equal(loaded.face_renderer.unet.conv_in.weight, diffusion_pipe.face_renderer.unet.conv_in.weight)
    args = ["--image", str(media / "photo.png"), "--audio", str(media / "speech.wav"), "--steps", "2",
            "--renderer", "diffusion", "-q"]
    assert main(["generate", *args, "-o", str(tmp_path / "d.mp4"), "--checkpoint", str(tmp_path / "ckpt")]) == 0
    assert "256x256" in ffprobe_text(tmp_path / "d.mp4")
    assert main(["landmarks", *args[:6], "-o", str(tmp_path / "t.json"), "--checkpoint", str(tmp_path / "ckpt")]) == 0
    assert main(["render", "--image", str(media / "photo.png"), "--landmarks", str(tmp_path / "t.json"),
                 "--renderer", "diffusion", "--checkpoint", str(tmp_path / "ckpt"), "-o", str(tmp_path / "r.mp4"),
                 "-q"]) == 0
    assert "256x256" in ffprobe_text(tmp_path / "r.mp4")
    pipe.save_pretrained(tmp_path / "warp_only")
    capsys.readouterr()
    assert main(["generate", *args, "-o", str(tmp_path / "w.mp4"), "--checkpoint", str(tmp_path / "warp_only")]) != 0
    assert "has no diffusion renderer" in capsys.readouterr().err and not (tmp_path / "w.mp4").exists()


@pytest.mark.parametrize("scheduler_cls", ["UniPCMultistepScheduler", "EulerDiscreteScheduler",
                                           "DPMSolverMultistepScheduler", "DDPMScheduler"])
def test_schedulers_swap_in(diffusion_pipe, media, scheduler_cls, monkeypatch):
    """``pipe.scheduler = X.from_config(pipe.scheduler.config)`` works for both samplers: each step gets only the
    arguments its scheduler takes, and every model input goes through scale_model_input first (Euler-type schedulers
    scale it). (EulerAncestralDiscreteScheduler cannot be used: diffusers' version has no x0 prediction, which both
    models use.)"""
    import diffusers

    cls = getattr(diffusers, scheduler_cls)
    scaled, steps = [], []
    scale, step = cls.scale_model_input, cls.step
    monkeypatch.setattr(cls, "scale_model_input", lambda self, *a, **k: scaled.append(1) or scale(self, *a, **k))
    monkeypatch.setattr(cls, "step", lambda self, *a, **k: steps.append(1) or step(self, *a, **k))
    pipe = TalkingFacePipeline(landmark_denoiser=diffusion_pipe.landmark_denoiser,
                               face_renderer=diffusion_pipe.face_renderer,
                               scheduler=cls.from_config(diffusion_pipe.scheduler.config),
                               renderer_scheduler=cls.from_config(diffusion_pipe.renderer_scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    inputs = pipe.prepare(media / "photo.png", media / "speech.wav")
    track = pipe.generate_landmarks(inputs, num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    assert np.isfinite(track.frames).all() and track.num_frames == 38
    short = dataclasses.replace(inputs, audio=inputs.audio[:3 * 640])
    frames = pipe.render(short, track, renderer="diffusion", generator=torch.Generator().manual_seed(0))
    assert frames.shape == (3, 256, 256, 3) and frames.std() > 1
    assert len(scaled) == len(steps) > 0


@pytest.mark.parametrize("dtype_name", ["dtype", "torch_dtype"])
def test_bfloat16_pipeline_runs_both_renderers(diffusion_pipe, media, tmp_path, dtype_name):
    """``from_pretrained(..., dtype=torch.bfloat16)`` (or the older ``torch_dtype``): landmarks and both renderers run,
    and the landmarks stay close to float32's."""
    diffusion_pipe.save_pretrained(tmp_path / "ckpt")
    half = TalkingFacePipeline.from_pretrained(tmp_path / "ckpt", **{dtype_name: torch.bfloat16})
    assert half.landmark_denoiser.dtype == half.face_renderer.dtype == torch.bfloat16
    half.set_progress_bar_config(disable=True)
    inputs = half.prepare(media / "photo.png", media / "speech.wav")
    track = half.generate_landmarks(inputs, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    full = diffusion_pipe.generate_landmarks(inputs, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert np.isfinite(track.frames).all() and np.abs(track.frames - full.frames).max() < 3.0  # pixels
    short = dataclasses.replace(inputs, audio=inputs.audio[:2 * 640])
    for renderer in ("warp", "diffusion"):
        frames = half.render(short, track, renderer=renderer, generator=torch.Generator().manual_seed(0))
        assert frames.shape == (2, 256, 256, 3) and frames.std() > 1


def test_audio_driven_tracks_blink_by_default(pipe, media, tmp_path):
    """People blink about 15-20 times a minute for 100-400 ms; a generated track does too unless told otherwise
    (the landmark model alone does not blink). Blinks are found as the lids closing against the same track made
    with ``blink_rate=0`` (this tiny untrained model's own eye points jitter)."""
    from pipeline.app_logic import eye_openness

    sf.write(tmp_path / "minute.wav", speechlike(60.0), 16000)
    inputs = pipe.prepare(media / "photo.png", tmp_path / "minute.wav")
    counts = []
    for seed in range(3):
        none = pipe.generate_landmarks(inputs, num_inference_steps=2, blink_rate=0,
                                       generator=torch.Generator().manual_seed(seed))
        default = pipe.generate_landmarks(inputs, num_inference_steps=2, generator=torch.Generator().manual_seed(seed))
        closing = eye_openness(none) - eye_openness(default) > 0.1  # (T,) lids at least 10 % closed
        starts = np.flatnonzero(np.diff(closing.astype(int)) == 1) + 1
        ends = np.flatnonzero(np.diff(closing.astype(int)) == -1) + 1
        durations = (ends - starts[: len(ends)]) / default.fps
        assert np.all((durations >= 0.1) & (durations <= 0.4)), durations
        counts.append(len(starts))
    assert 14 <= np.mean(counts) <= 20, counts


def test_dubbing_keeps_the_videos_upper_face_and_generates_the_mouth(pipe, media, astronaut_landmarks, tmp_path):
    """dub_landmarks: head pose, eyes and brows from the driving track (retargeted onto the photo), mouth and jaw
    from the model; a shorter driving track holds its last frame; the CLI's --driving-video does the same."""
    from pipeline.canonical import pose_from_transform, rotation_matrix
    from pipeline.landmarks import retarget
    from pipeline.regions import LOWER_FACE

    inputs = pipe.prepare(media / "photo.png", media / "speech.wav")  # 38 frames
    face = inputs.points3d
    centre = face.mean(axis=0)
    turning = np.stack([(face - centre) @ rotation_matrix(np.array([yaw, 0.0, 0.0])).T + centre
                        for yaw in np.linspace(-15, 15, 30)]).astype(np.float32)  # 30 frames: shorter
    driving = LandmarkTrack(turning, 25, inputs.image_size, reference=face)
    dubbed = pipe.dub_landmarks(inputs, driving, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert dubbed.num_frames == 38 and dubbed.info["generated_points"] == list(LOWER_FACE)
    upper = dubbed.info["driven_points"]
    expected = retarget(driving, face, inputs.image_size).frames
    assert np.abs(dubbed.frames[:30, upper] - expected[:, upper]).max() < 0.05  # pixels
    assert np.abs(dubbed.frames[30:, upper] - expected[-1:, upper]).max() < 0.05  # held at the last frame
    yaw = pose_from_transform(dubbed.canonical()[1])[:30, 0]
    assert np.corrcoef(yaw, np.linspace(-15, 15, 30))[0, 1] > 0.99
    fast = LandmarkTrack(turning, 50, inputs.image_size, reference=face)  # the same turn in 0.6 s of a 50 fps video
    quick = pipe.dub_landmarks(inputs, fast, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    quick_yaw = pose_from_transform(quick.canonical()[1])[:, 0]
    assert np.corrcoef(quick_yaw[:15], np.linspace(-15, 15, 30)[::2])[0, 1] > 0.99  # every other video frame
    assert np.argmax(quick_yaw) == 14 and np.allclose(quick_yaw[14:], quick_yaw[14], atol=0.5)  # then held

    from pipeline.video import Mp4Writer

    with Mp4Writer(tmp_path / "driver.mp4", fps=25) as writer:
        photo = np.asarray(Image.open(media / "photo.png").convert("RGB"))
        for i in range(20):
            writer.write(np.roll(photo, i, axis=1))
    pipe.save_pretrained(tmp_path / "ckpt")
    assert main(["generate", "--image", str(media / "photo.png"), "--audio", str(media / "speech.wav"),
                 "--driving-video", str(tmp_path / "driver.mp4"), "--checkpoint", str(tmp_path / "ckpt"),
                 "--steps", "2", "-o", str(tmp_path / "dub.mp4"), "--landmarks-out", str(tmp_path / "dub.json"),
                 "-q"]) == 0
    assert LandmarkTrack.load(tmp_path / "dub.json").info["source"] == "dubbing"
    assert "256x256" in ffprobe_text(tmp_path / "dub.mp4")
