import numpy as np
import pytest

from convkit import to_image
from convkit.errors import UsageError

RESPONSE = np.array([[-300.0, -2.5, 0.5, 1.5, 2.5, 254.5, 255.5, 1000.0]])


def test_clip_rounds_half_to_even_and_clips():
    np.testing.assert_array_equal(to_image(RESPONSE), [[0, 0, 0, 2, 2, 254, 255, 255]])
    assert to_image(RESPONSE).dtype == np.uint8


def test_abs_then_clip():
    np.testing.assert_array_equal(
        to_image(RESPONSE, rescale="abs"), [[255, 2, 0, 2, 2, 254, 255, 255]]
    )


def test_minmax_stretches_the_whole_response():
    response = np.array([[-10.0, 0.0, 10.0]])
    np.testing.assert_array_equal(to_image(response, rescale="minmax"), [[0, 128, 255]])
    # a constant response has nothing to stretch: mid-grey, where black would look like 0
    np.testing.assert_array_equal(to_image(np.full((2, 2), 7.0), rescale="minmax"), [[128] * 2] * 2)
    sixteen = to_image(np.full(3, -2.0), like=np.zeros(3, np.uint16), rescale="minmax")
    np.testing.assert_array_equal(sixteen, [32768] * 3)


def test_sixteen_bit_keeps_its_depth():
    out = to_image(np.array([[-1.0, 1000.4, 70000.0]]), like=np.zeros(1, dtype=np.uint16))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, [[0, 1000, 65535]])


def test_none_keeps_the_float_response():
    out = to_image(RESPONSE, rescale="none", bias=1.0)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, RESPONSE + 1)


def test_bias_then_relu_then_policy():
    response = np.array([[-5.0, 3.0]])
    # -5 + 4 = -1 -> relu 0; 3 + 4 = 7
    np.testing.assert_array_equal(
        to_image(response, rescale="none", bias=4, activation="relu"), [[0.0, 7.0]]
    )
    # relu before abs: the negative response does not come back as positive
    np.testing.assert_array_equal(to_image(response, rescale="abs", activation="relu"), [[0, 3]])


def test_the_response_is_not_modified():
    response = RESPONSE.copy()
    to_image(response, rescale="abs", activation="relu")
    np.testing.assert_array_equal(response, RESPONSE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rescale": "stretch"}, "unknown rescale policy 'stretch': use one of clip, abs, minmax"),
        ({"activation": "tanh"}, "unknown activation 'tanh': use one of relu"),
    ],
)
def test_unknown_choices(kwargs, message):
    with pytest.raises(UsageError, match=message):
        to_image(RESPONSE, **kwargs)
