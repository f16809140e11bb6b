"""The pipeline's choices: when an image is streamed, which backends run by default, and
where the registry's reference runs."""

import numpy as np
import pytest

from convkit.backends import KNOWN_BACKENDS, reference_backend
from convkit.kernels import get_kernel
from convkit.padding import Padding
from convkit.pipeline import ApplySettings, choose_backends, default_backends, streamed_rows
from convkit.stack import Stack


@pytest.mark.parametrize(
    ("changes", "kernel", "expected"),
    [
        ({}, "sharpen", True),
        ({"backends": ("naive",)}, "sharpen", False),
        ({"backends": ("naive", "filter2d")}, "sharpen", False),
        ({"compare": True}, "sharpen", False),
        ({"rescale": "minmax"}, "sharpen", False),
        ({"rescale": "none"}, "sharpen", False),
        ({"padding": Padding("constant", 0.5)}, "sharpen", False),
        ({"padding": Padding("constant", 300.0)}, "sharpen", False),
        ({"padding": Padding("constant", 7.0)}, "sharpen", True),
        ({}, "stack", False),
    ],
)
def test_streaming_only_where_nothing_needs_the_whole_response(changes, kernel, expected):
    values = {"backends": ("filter2d",), "compare": False} | changes
    options = ApplySettings(**values)
    image = np.zeros((4, 4), dtype=np.uint8)
    sharpen = get_kernel("sharpen")
    chosen = Stack("stack", (sharpen, "relu", sharpen)) if kernel == "stack" else sharpen
    assert (streamed_rows(image, chosen, options.backends, options) is not None) is expected


def test_defaults_are_the_registry_reference_and_the_engine_default():
    assert default_backends() == (reference_backend(), "filter2d")
    assert KNOWN_BACKENDS[default_backends()[0]].reference


def test_the_reference_is_left_out_by_its_registry_cost():
    reference = reference_backend()
    kernels = [get_kernel("box:31")]
    cost = KNOWN_BACKENDS[reference].cost
    assert cost.seconds(192 * 192, (31, 31)) < 10 < cost.seconds(2000 * 2000, (31, 31))
    assert choose_backends(None, (192, 192), kernels, repeat=1) == (default_backends(), None)
    backends, note = choose_backends(None, (2000, 2000), kernels, repeat=1)
    assert backends == ("filter2d",)
    assert note.startswith(f"{reference} backend left out: about ")
