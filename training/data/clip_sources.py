"""The real clips of ``../shared/data``: the fixed held-out split by person, and each clip's licence.

The licences are those ``../shared/data/README.md`` gives; a checkpoint trained on a clip inherits its terms, so
:func:`licence_summary` is written into every ``training_info.json``. ``permissive`` marks clips whose terms allow
commercial use (CC BY, Apache-2.0, MIT, US government work); the others are research or non-commercial only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClipSource:
    licence: str
    permissive: bool


_GRID = ClipSource("GRID corpus, CC BY 4.0", True)
_VOX = ClipSource("VoxCeleb2, CC BY 4.0", True)
_HDTF = ClipSource("HDTF-style YouTube clip, research use only", False)
_LRS2 = ClipSource("LRS2 (BBC), research use only", False)

CLIPS: dict[str, ClipSource] = {
    **{name: _GRID for name in ("grid_bbaf2n", "grid_brbk7n", "grid_lbax4n", "grid_lbbc2a", "grid_lrwp9a")},
    **{name: _VOX for name in ("vox_00015", "vox_00086", "vox_00373", "vox_681100216", "vox_00010", "vox_00098")},
    **{name: _HDTF for name in ("hdtf_theresamay", "hdtf_rdradio2", "hdtf_bobmenendez", "hdtf_edmarkey",
                                "hdtf_rdradio10", "edtalk_tedlieu")},
    "edtalk_obama": ClipSource("US government address (public domain), EDTalk repo Apache-2.0", True),
    "infinitetalk_baldman": ClipSource("InfiniteTalk repo, Apache-2.0 (origin undocumented)", True),
    **{name: ClipSource("LatentSync repo, Apache-2.0 (stock-style footage, origin undocumented)", True)
       for name in ("latentsync_demo1", "latentsync_demo2", "latentsync_demo3")},
    "tpsmm_jackiechan": ClipSource("Thin-Plate-Spline-Motion-Model repo, MIT", True),
    "minimates_libingbing": ClipSource("MiniMates repo, MIT", True),
    "mead_m030_sad": ClipSource("MEAD, research / non-commercial only", False),
    "headgan_blonde": ClipSource("headGAN repo, CC BY-NC-SA 4.0 (non-commercial)", False),
    "w2lgfpgan_blondebluebg": ClipSource("Wav2Lip-GFPGAN repo, no licence file (all rights reserved)", False),
    **{f"lrs2_davsr_{n}": _LRS2 for n in ("00001", "00004", "00008", "00009", "00016", "00019", "00022", "00024")},
}

#: Held out by person (never trained or tuned on): studio (GRID), in-the-wild (VoxCeleb2), news (HDTF), stock
#: footage, an interview, an emotional studio recording (MEAD) and a studio webcam-style clip; 7 people.
HOLDOUT: tuple[str, ...] = ("grid_lrwp9a", "vox_00098", "hdtf_theresamay", "latentsync_demo2", "tpsmm_jackiechan",
                            "mead_m030_sad", "w2lgfpgan_blondebluebg")


def base_name(example_name: str) -> str:
    """The clip an example came from (``vox_00015-mirror`` -> ``vox_00015``; window suffixes ``@N`` dropped)."""
    return example_name.split("@")[0].removesuffix("-mirror")


def licence_summary(example_names: list[str]) -> dict[str, object]:
    """Which clips the names come from, each with its licence, and whether all of them are permissive."""
    clips = sorted({base_name(n) for n in example_names})
    known = {c: CLIPS[c] for c in clips if c in CLIPS}
    unknown = [c for c in clips if c not in CLIPS]
    return {
        "clips": {c: s.licence for c, s in known.items()} | {c: "unknown" for c in unknown},
        "all_permissive": not unknown and all(s.permissive for s in known.values()),
        "research_only_or_unclear": sorted([c for c, s in known.items() if not s.permissive] + unknown),
    }
