"""The per-stage thread policy (pipeline/threads.py) and its overrides."""

import os

import cv2
import pytest
import torch

from pipeline.cli import main
from pipeline.threads import POLICY, THREADS_ENV, stage_threads, threads_for


@pytest.fixture
def no_override(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_policy_per_stage(no_override, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert threads_for("landmarks") == threads_for("diffusion") == threads_for("face") == 1
    assert threads_for("warp") == threads_for("speech") == 8  # "all"
    assert set(POLICY) == {"face", "landmarks", "speech", "warp", "diffusion"}


def test_overrides(no_override, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_for("landmarks") == threads_for("warp") == 3
    monkeypatch.setenv(THREADS_ENV, "2")  # ours wins over OMP_NUM_THREADS
    assert threads_for("landmarks") == 2


def test_stage_threads_sets_and_restores(no_override, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    with stage_threads("warp"):
        assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
    assert torch.get_num_threads() == 2 and cv2.getNumThreads() == 2


def test_cli_threads_flag_is_checked(capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(["extract", "--video", str(tmp_path / "x.mp4"), "-o", str(tmp_path / "t.json"), "--threads", "0"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument --threads: must be from 1 to 256, not 0")
