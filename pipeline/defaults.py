"""Sampling defaults shared by the pipeline, the CLI, the app and the evaluation scripts (importable without torch)."""

#: DDIM steps per window of the landmark model. Fewer steps gave closer mouths on the training clips (LMD 0.0174 at
#: 6 steps, 0.0182 at 10) and on the held-out ones (seeds 0-4: 0.0367-0.0377 at 6, 0.0376-0.0392 at 10), and are
#: faster (training/evaluate_landmarks.py --steps N --seed S; README).
DEFAULT_STEPS = 6
#: Blinks added per minute unless asked otherwise: people blink about 15-20 times a minute, and the landmark model
#: alone blinks about never (0 in 60 s of speech, measured), so audio-driven videos blink by default.
DEFAULT_BLINK_RATE = 17.0
#: Share of the mouth opening the pipeline takes from its deterministic mouth regressor (the rest from the sampled
#: mouth). With the Whisper-feature regressor (two encoder positions a frame, smoothed), median r@0 of the opening
#: over 4 seeds on the two validation splits (7 held-out people / 8 clips_lowres people, models fitted without
#: them): 0.75 -> 0.545 / 0.576, 0.9 -> 0.555 / 0.570, 1 -> 0.551 / 0.555; the sampled mouth alone 0.266 / 0.412.
#: 0.9 has the best worse split and the best mean of the two (README, lip sync).
DEFAULT_MOUTH_BLEND = 0.9

#: Ranges of the sampling and editing settings, shared by the command line (checked there) and the pipeline.
MAX_STEPS = 1000  # the training schedule's number of timesteps
MAX_GUIDANCE = 20.0
MAX_HEAD_MOTION = 5.0
MAX_BLINK_RATE = 120.0  # per minute
MAX_SMOOTHING = 25.0  # frames
MAX_SEED = 2**63 - 1
