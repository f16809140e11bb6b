import numpy as np
import pytest

from convkit.errors import UsageError
from convkit.padding import (
    PADDING_ALIASES,
    PADDING_MODES,
    Padding,
    cv2_border,
    pad_image,
    pad_widths,
    resolve_padding,
)

ROW = np.array([[1, 2, 3, 4, 5, 6, 7, 8]])  # abcdefgh


def _pattern(mode: str) -> str:
    padded = pad_image(ROW, (1, 7), (0, 3), Padding(mode))
    letters = "".join("0" if v == 0 else "abcdefgh"[int(v) - 1] for v in padded[0])
    return f"{letters[:3]}|{letters[3:-3]}|{letters[-3:]}"


@pytest.mark.parametrize("mode", ["replicate", "constant", "reflect", "reflect101", "wrap"])
def test_the_shared_padding_step_draws_the_documented_pattern(mode):
    assert _pattern(mode) == PADDING_MODES[mode].pattern


@pytest.mark.parametrize(("alias", "name"), sorted(PADDING_ALIASES.items()))
def test_aliases_resolve(alias, name):
    assert resolve_padding(alias) == name
    assert resolve_padding(alias.upper()) == name


def test_unknown_mode_names_the_valid_ones():
    with pytest.raises(UsageError, match=r"unknown padding mode 'bounce': use one of replicate"):
        resolve_padding("bounce")


@pytest.mark.parametrize(
    ("shape", "anchor", "expected"),
    [
        ((3, 3), (1, 1), ((1, 1), (1, 1))),
        ((2, 2), (1, 1), ((1, 0), (1, 0))),  # even: one row above, none below
        ((3, 5), (1, 2), ((1, 1), (2, 2))),
        ((1, 7), (0, 3), ((0, 0), (3, 3))),
        ((4, 6), (0, 5), ((0, 3), (5, 0))),  # off-centre anchor
    ],
)
def test_pad_widths_follow_the_anchor_not_the_half_width(shape, anchor, expected):
    assert pad_widths(shape, anchor, "replicate") == expected


def test_valid_pads_nothing():
    assert pad_widths((5, 5), (2, 2), "valid") == ((0, 0), (0, 0))
    assert pad_image(ROW, (1, 3), (0, 1), Padding("valid")) is ROW


def test_opencv_gets_only_the_borders_it_does_exactly():
    import cv2

    assert cv2_border(Padding("reflect"), (10, 10), (3, 3), (1, 1)) == cv2.BORDER_REFLECT
    assert cv2_border(Padding("wrap"), (10, 10), (3, 3), (1, 1)) is None
    assert cv2_border(Padding("valid"), (10, 10), (3, 3), (1, 1)) is None
    assert cv2_border(Padding("constant", 0.0), (10, 10), (3, 3), (1, 1)) == cv2.BORDER_CONSTANT
    assert cv2_border(Padding("constant", 5.0), (10, 10), (3, 3), (1, 1)) is None
    assert cv2_border(Padding("reflect"), (2, 10), (5, 5), (2, 2)) is None  # pad >= height
