"""The 68-point iBUG / Multi-PIE landmark layout, named once for the whole project."""

from __future__ import annotations

NUM_POINTS = 68

JAW = tuple(range(0, 17))
RIGHT_BROW = tuple(range(17, 22))  # subject's right, image left
LEFT_BROW = tuple(range(22, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_BASE = tuple(range(31, 36))
RIGHT_EYE = tuple(range(36, 42))  # 36 outer corner, 37-38 upper lid, 39 inner corner, 40-41 lower lid
LEFT_EYE = tuple(range(42, 48))  # 42 inner corner, 43-44 upper lid, 45 outer corner, 46-47 lower lid
OUTER_LIP = tuple(range(48, 60))  # 48 right corner, 51 top centre, 54 left corner, 57 bottom centre
INNER_LIP = tuple(range(60, 68))  # 60 right corner, 62 top centre, 64 left corner, 66 bottom centre

BROWS = RIGHT_BROW + LEFT_BROW
NOSE = NOSE_BRIDGE + NOSE_BASE
EYES = RIGHT_EYE + LEFT_EYE
MOUTH = OUTER_LIP + INNER_LIP
#: Points that speech moves: the lips and the lower jaw line (AToM-Net's "lip" stream).
LOWER_FACE = JAW[3:14] + MOUTH
#: Every other point: what a driving video gives when the model completes the lower face (dubbing).
UPPER_FACE = tuple(i for i in range(NUM_POINTS) if i not in set(LOWER_FACE))
#: Points that move with the head but barely with expression: used to align faces (Procrustes).
STABLE = NOSE + (36, 39, 42, 45)

REGIONS: dict[str, tuple[int, ...]] = {
    "jaw": JAW,
    "right_brow": RIGHT_BROW,
    "left_brow": LEFT_BROW,
    "nose_bridge": NOSE_BRIDGE,
    "nose_base": NOSE_BASE,
    "right_eye": RIGHT_EYE,
    "left_eye": LEFT_EYE,
    "outer_lip": OUTER_LIP,
    "inner_lip": INNER_LIP,
}

#: Upper and lower eyelid point pairs that meet when an eye closes.
EYELID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))
#: Upper and lower inner-lip point pairs; their gap is the mouth opening.
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
EYE_OUTER_CORNERS = (36, 45)

#: Index of each point's left-right mirror partner (for flipping a face horizontally).
MIRROR = (
    tuple(range(16, -1, -1))  # jaw
    + tuple(range(26, 16, -1))  # brows
    + (27, 28, 29, 30)  # nose bridge
    + (35, 34, 33, 32, 31)  # nose base
    + (45, 44, 43, 42, 47, 46)  # right eye <-> left eye
    + (39, 38, 37, 36, 41, 40)
    + (54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55)  # outer lip
    + (64, 63, 62, 61, 60, 67, 66, 65)  # inner lip
)
assert sorted(MIRROR) == list(range(NUM_POINTS))
