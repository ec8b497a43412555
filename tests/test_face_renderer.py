"""Fast tests of the diffusion face renderer: model, renderer API, data preparation and training, on tiny configs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from pipeline.canonical import inter_ocular
from pipeline.models.face_renderer import (
    CONDITION_CHANNELS,
    LandmarkFaceRenderer,
    condition_channels,
    inside_mouth_weight,
    landmark_map,
    mouth_weight,
    normalise_landmarks,
    region_masks,
)
from pipeline.render.diffusion import DiffusionRenderer
from pipeline.render.warp import WarpRenderer

pytestmark = pytest.mark.usefixtures("one_thread")

RESOLUTION = 32


def tiny_model(prediction_type: str = "sample") -> LandmarkFaceRenderer:
    torch.manual_seed(0)
    return LandmarkFaceRenderer(
        resolution=RESOLUTION,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_heads=2,
        norm_num_groups=4,
        cross_attention_dim=16,
        num_frequencies=3,
        prediction_type=prediction_type,
    )


def talking(reference: np.ndarray, count: int) -> np.ndarray:
    """``count`` frames opening the mouth (lower lip and chin down) from the reference landmarks ``(68, 2)``."""
    frames = np.repeat(reference[None], count, axis=0).astype(np.float64)
    drop = np.linspace(0.0, 0.25, count) * np.linalg.norm(reference[45] - reference[36])
    frames[:, [55, 56, 57, 58, 59, 65, 66, 67] + list(range(5, 12)), 1] += drop[:, None]
    return frames


@pytest.fixture(scope="module")
def model() -> LandmarkFaceRenderer:
    return tiny_model().eval()


def test_model_shapes_and_conditioning(model, astronaut_landmarks):
    points = WarpRenderer(RESOLUTION).crop_landmarks(
        WarpRenderer(RESOLUTION).prepare(np.zeros((512, 512, 3), np.uint8), astronaut_landmarks), astronaut_landmarks
    )
    warp = np.full((RESOLUTION, RESOLUTION, 3), 128, np.uint8)
    cond = condition_channels(warp, warp, points, None)
    assert cond.shape == (CONDITION_CHANNELS, RESOLUTION, RESOLUTION) and cond.dtype == np.float32
    assert np.all(cond[-1] == 0) and np.all(condition_channels(warp, warp, points, warp)[-1] == 1)
    soft, hard = region_masks(points, (RESOLUTION, RESOLUTION))
    assert hard.any() and np.all(soft <= hard) and not hard[: int(points[30, 1]) - 1].any()
    assert landmark_map(points, RESOLUTION).max() > 0.5
    batch = 2
    x = torch.randn(batch, 3, RESOLUTION, RESOLUTION)
    lmk = torch.from_numpy(normalise_landmarks(points, RESOLUTION))[None].repeat(batch, 1, 1)
    out = model(x, torch.tensor([10, 500]), lmk, torch.from_numpy(cond)[None].repeat(batch, 1, 1, 1))
    assert out.sample.shape == (batch, 3, RESOLUTION, RESOLUTION)
    with pytest.raises(AssertionError):
        model(x, 10, lmk, torch.zeros(batch, CONDITION_CHANNELS - 1, RESOLUTION, RESOLUTION))


def test_save_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "face_renderer")
    assert (tmp_path / "face_renderer" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = LandmarkFaceRenderer.from_pretrained(tmp_path / "face_renderer").eval()
    assert loaded.config.prediction_type == "sample" and loaded.config.resolution == RESOLUTION
    x, cond = torch.randn(1, 3, RESOLUTION, RESOLUTION), torch.randn(1, CONDITION_CHANNELS, RESOLUTION, RESOLUTION)
    lmk = torch.rand(1, 68, 2) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 7, lmk, cond).sample, model(x, 7, lmk, cond).sample)


@pytest.fixture(scope="module")
def renderer_inputs(astronaut, astronaut_landmarks):
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    reference = astronaut_landmarks.astype(np.float64) / 2.0
    return small, reference, talking(reference, 5)


def make_renderer(model, size=64, full=False, strength=0.5, seed=0) -> DiffusionRenderer:
    scheduler = DDIMScheduler(num_train_timesteps=1000, prediction_type="sample", clip_sample=False)
    return DiffusionRenderer(model, scheduler, size=size, full=full, num_inference_steps=4, strength=strength,
                             generator=torch.Generator().manual_seed(seed))


def test_renderer_output_keeps_upper_face_and_chunks(model, renderer_inputs):
    photo, reference, frames = renderer_inputs
    renderer = make_renderer(model)
    ctx = renderer.prepare(photo, reference)
    video = renderer.render(ctx, frames)
    assert video.shape == (len(frames), 64, 64, 3) and video.dtype == np.uint8
    assert ctx.frames_rendered == len(frames) and ctx.previous.shape == (RESOLUTION, RESOLUTION, 3)

    warp = WarpRenderer(64)
    expected = warp.render(warp.prepare(photo, reference), frames)
    out_points = renderer.crop_landmarks(ctx, frames)
    top = int(np.floor(out_points[:, 30, 1].min() - 0.1 * np.ptp(out_points[:, :, 0])))
    assert top > 10
    np.testing.assert_array_equal(video[:, :top], expected[:, :top])  # the upper face is the warp frame's
    assert not np.array_equal(video, expected)  # the lower face was repainted

    renderer.reset(ctx)
    chunked = np.concatenate([renderer.render(ctx, frames[:2]), renderer.render(ctx, frames[2:3]),
                              renderer.render(ctx, frames[3:])])
    np.testing.assert_array_equal(chunked, video)
    again = make_renderer(model)
    np.testing.assert_array_equal(again.render(again.prepare(photo, reference), frames), video)  # same seed


def test_renderer_full_mode_and_zero_strength(model, renderer_inputs):
    photo, reference, frames = renderer_inputs
    full = make_renderer(model, full=True)
    video = full.render(full.prepare(photo, reference), frames[:2])
    assert video.shape == (2,) + photo.shape and video.dtype == np.uint8
    none = make_renderer(model, strength=0.0)
    warp = WarpRenderer(64)
    np.testing.assert_array_equal(none.render(none.prepare(photo, reference), frames),
                                  warp.render(warp.prepare(photo, reference), frames))
    assert none.render(none.prepare(photo, reference), frames[:0]).shape == (0, 64, 64, 3)
    with pytest.raises(ValueError):
        DiffusionRenderer(model, DDIMScheduler(prediction_type="epsilon"))


def test_mouth_margin_keeps_the_rest_of_the_lower_face(model, renderer_inputs):
    """With ``mouth_margin`` only pixels near the lips take the refined crop; the chin and jaw stay the warp's."""
    photo, reference, frames = renderer_inputs
    warp = WarpRenderer(256)
    expected = warp.render(warp.prepare(photo, reference), frames)
    scheduler = DDIMScheduler(num_train_timesteps=1000, prediction_type="sample", clip_sample=False)
    videos = {}
    for margin in (None, 0.25):
        renderer = DiffusionRenderer(model, scheduler, size=256, num_inference_steps=4, strength=0.5,
                                     generator=torch.Generator().manual_seed(0), mouth_margin=margin)
        videos[margin] = renderer.render(renderer.prepare(photo, reference), frames)
    points = warp.crop_landmarks(warp.prepare(photo, reference), frames)
    changed = {m: np.abs(v.astype(int) - expected.astype(int)).max(axis=-1) > 0 for m, v in videos.items()}
    for t in range(len(frames)):
        lips = np.zeros((256, 256), np.uint8)
        cv2.fillConvexPoly(lips, cv2.convexHull(np.round(points[t, 48:60]).astype(np.int32)), 1)
        outside = cv2.distanceTransform(1 - lips, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        near = outside < 0.25 * inter_ocular(points[t]) + 2  # pixels within the margin of the lips (+2 px slack)
        assert changed[0.25][t].any() and not changed[0.25][t][~near].any()
        assert changed[None][t][~near].any()  # without the margin the repaint reaches beyond the mouth
        weight = mouth_weight(points[t], (256, 256), margin=0.25)
        assert weight.max() == 1.0 and weight[~near].max() == 0.0


def test_keep_mouth_inside_leaves_the_teeth_to_the_warp(model, renderer_inputs):
    """With ``keep_mouth_inside`` the open mouth's inside (the inner lips' hull) is the warp frame's, pixel for pixel,
    while the lips around it still take the model's change."""
    photo, reference, frames = renderer_inputs
    warp = WarpRenderer(256)
    expected = warp.render(warp.prepare(photo, reference), frames)
    scheduler = DDIMScheduler(num_train_timesteps=1000, prediction_type="sample", clip_sample=False)
    renderer = DiffusionRenderer(model, scheduler, size=256, num_inference_steps=4, strength=0.5,
                                 generator=torch.Generator().manual_seed(0), mouth_margin=0.25,
                                 keep_mouth_inside=True)
    video = renderer.render(renderer.prepare(photo, reference), frames)
    changed = np.abs(video.astype(int) - expected.astype(int)).max(axis=-1) > 0
    points = warp.crop_landmarks(warp.prepare(photo, reference), frames)
    t = len(frames) - 1  # the widest opening
    inside = np.zeros((256, 256), np.uint8)
    cv2.fillConvexPoly(inside, cv2.convexHull(np.round(points[t, 60:68]).astype(np.int32)), 1)
    assert inside.sum() > 50  # the mouth is open
    core = cv2.erode(inside, np.ones((3, 3), np.uint8)).astype(bool)  # one pixel in from the rounded outline
    assert not changed[t][core].any()
    lips = np.zeros((256, 256), np.uint8)
    cv2.fillConvexPoly(lips, cv2.convexHull(np.round(points[t, 48:60]).astype(np.int32)), 1)
    assert changed[t][(lips > 0) & (inside == 0)].mean() > 0.5
    weight = inside_mouth_weight(points[t], (256, 256))
    assert weight[core].min() == 1.0 and weight[lips == 0].max() == 0.0


def _brightens(shift: int):
    """A stand-in for ``DiffusionRenderer.refine`` that returns the warp crop ``shift`` levels brighter."""
    return lambda ctx, crop, *_: np.clip(crop.astype(int) + shift, 0, 255).astype(np.uint8)


def test_refinement_adds_the_models_change_to_the_full_size_warp(model, renderer_inputs, monkeypatch):
    """At an output larger than the model's crop, the warp frame's own detail stays: a crop the model leaves alone
    gives the warp frame exactly (an upscaled model crop would not), and a change of the crop shows where the paste
    mask is, at the mask's weight."""
    photo, reference, frames = renderer_inputs
    warp = WarpRenderer(256)
    expected = warp.render(warp.prepare(photo, reference), frames)
    points = warp.crop_landmarks(warp.prepare(photo, reference), frames)
    for shift in (0, 30):
        renderer = make_renderer(model, size=256)
        monkeypatch.setattr(renderer, "refine", _brightens(shift))
        video = renderer.render(renderer.prepare(photo, reference), frames)
        difference = video.astype(int) - expected.astype(int)
        if shift == 0:
            np.testing.assert_array_equal(video, expected)
            continue
        for t in range(len(frames)):
            soft = region_masks(points[t], (256, 256))[0]
            inside = (soft > 0.99) & (expected[t].max(axis=-1) < 200)  # pixels the +30 is not clipped on
            off = np.abs(difference[t][inside] - shift)  # (a few sit beside crop pixels clipped at 255)
            assert inside.sum() > 100 and np.mean(off <= 1) > 0.98 and off.max() <= shift
            assert not difference[t][soft == 0].any()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, astronaut, analyzer):
    """Two tiny synthetic clips (the astronaut sliding a little), prepared at the tiny model's resolution."""
    from pipeline.video import Mp4Writer
    from training.data.prepare_renderer_data import prepare

    root = tmp_path_factory.mktemp("renderer-data")
    face = np.ascontiguousarray(astronaut[20:260, 100:340])  # (240, 240, 3), the face about 90 px wide
    for name, dx in (("clip_a", 2.0), ("clip_b", -2.0)):
        frames = [cv2.warpAffine(face, np.float32([[1, 0, dx * i], [0, 1, 0]]), (240, 240),
                                 borderMode=cv2.BORDER_REPLICATE) for i in range(4)]
        with Mp4Writer(root / "clips" / name / "video.mp4", fps=25) as writer:
            writer.write(np.stack(frames))
    rows = prepare(root / "clips", root / "out", holdout={"clip_b"}, resolution=RESOLUTION, references=3,
                   log=lambda *_: None)
    return root / "out", rows


def test_prepare_renderer_data(prepared):
    from training.data.prepare_renderer_data import RendererClip, find_clips

    out, rows = prepared
    assert {r["name"]: r["split"] for r in rows} == {"clip_a": "train", "clip_b": "holdout"}
    references = {r["name"]: r["references"] for r in rows}
    assert references["clip_b"] == [0] and references["clip_a"][0] == 0 and len(references["clip_a"]) >= 2
    assert [p.stem for p in find_clips(out / "holdout")] == ["clip_b"]
    names = ["clip_a"] + [f"clip_a@{k}" for k in sorted(references["clip_a"][1:])]
    assert [p.stem for p in find_clips(out / "train")] == names
    for name in names:
        clip = RendererClip.load(out / "train" / f"{name}.npz")
        t, k = len(clip.frames), clip.reference_index
        assert name == ("clip_a" if k == 0 else f"clip_a@{k}")
        assert t == 4 and clip.frames.shape == clip.warp.shape == (t, RESOLUTION, RESOLUTION, 3)
        assert clip.landmarks.shape == clip.photo_landmarks.shape == (t, 68, 2)
        # the reference frame's warp is (nearly) the crop itself; the landmarks follow the slide
        assert np.abs(clip.warp[k].astype(int) - clip.frames[k]).mean() < 4.0
        assert clip.landmarks[-1, 30, 0] > clip.landmarks[0, 30, 0]
    assert (out / "manifest.json").is_file()


def test_renderer_evaluation_does_not_score_the_photo_itself(prepared):
    """Frame 0 of a held-out clip is the photo, which the warp renderer gives back exactly: scored, its unbounded
    PSNR would swamp the mean (training/evaluate_renderer.py scores from frame 1 unless told otherwise)."""
    from training.data.prepare_renderer_data import RendererClip
    from training.evaluate_renderer import evaluate_clip

    out, _ = prepared
    clip = RendererClip.load(out / "holdout" / "clip_b.npz")

    class PhotoThenOff:
        """The real crops: frame 0 exactly, every later pixel 10 levels off (PSNR 28.13 dB)."""

        def prepare(self, photo, points):
            return None

        def render(self, ctx, points):
            frames = clip.frames.astype(int)
            frames[1:] = np.where(frames[1:] < 128, frames[1:] + 10, frames[1:] - 10)
            return frames.astype(np.uint8)

    def embed(image, points):
        return np.ones(8) / np.sqrt(8.0)

    expected = 10 * np.log10(255.0**2 / 100.0)
    scored = evaluate_clip(clip, {"r": PhotoThenOff()}, embed, chunk=64, identity_every=1)["r"]
    assert scored["psnr"] == pytest.approx(expected) and scored["psnr_mouth"] == pytest.approx(expected)
    with_photo = evaluate_clip(clip, {"r": PhotoThenOff()}, embed, chunk=64, identity_every=1, score_from=0)["r"]
    assert with_photo["psnr"] > expected + 20.0  # one exact frame of four adds 30 dB to the mean


def test_reference_frames_take_the_widest_and_most_closed_mouths(astronaut_landmarks):
    from training.data.prepare_renderer_data import reference_frames

    opening = talking(astronaut_landmarks, 6)  # frame i opens the mouth i steps
    frames = opening[[2, 4, 0, 3, 5, 1]]
    assert reference_frames(frames, 1) == [0]
    assert reference_frames(frames, 3) == [0, 4, 2]  # frame 0, the widest (5 steps), the most closed (0 steps)
    assert reference_frames(frames, 5) == [0, 4, 2, 3]  # + a third and two thirds up (2 steps: frame 0 again)
    assert reference_frames(opening, 3) == [0, 5]  # frame 0 is already the most closed


def test_training_steps_reduce_loss(prepared):
    from training.train_renderer import FrameSampler, load_clips, training_loss, validation_scores

    out, _ = prepared
    sampler = FrameSampler([(load_clips(out / "train"), 1.0)], p_previous=0.5, p_flip=0.5, seed=0)
    batch = sampler.batch(4)
    assert batch["condition"].shape == (4, CONDITION_CHANNELS, RESOLUTION, RESOLUTION)
    mouth = batch["mouth"]  # what the pipeline pastes: the lips and their margin, inside the generated region
    assert torch.all(mouth <= batch["mask"]) and torch.all(mouth.flatten(1).amax(1) == 1.0)
    assert torch.all(mouth.flatten(1).mean(1) < 0.5 * batch["mask"].flatten(1).mean(1))
    model = tiny_model("epsilon").train()
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type="epsilon", clip_sample=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_at_fixed_noise() -> float:
        with torch.no_grad():
            return float(training_loss(model, scheduler, batch, torch.Generator().manual_seed(1)))

    before = loss_at_fixed_noise()
    for _ in range(15):
        loss = training_loss(model, scheduler, batch, torch.Generator().manual_seed(1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss_at_fixed_noise() < 0.7 * before
    scores = validation_scores(model, scheduler, batch, [250], torch.Generator().manual_seed(0))
    assert set(scores) == {"warp", "x0@250", "mouth warp", "mouth x0@250"}
    assert all(np.isfinite(v) for v in scores.values())


def test_bfloat16_mixed_precision_training_step(prepared):
    from training.train_renderer import FrameSampler, load_clips, training_loss

    out, _ = prepared
    batch = FrameSampler([(load_clips(out / "train"), 1.0)], p_previous=0.5, p_flip=0.5, seed=0).batch(2)
    model = tiny_model().train()
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type="sample", clip_sample=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = training_loss(model, scheduler, batch, torch.Generator().manual_seed(0))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=False))
