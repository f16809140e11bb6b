from pathlib import Path

import numpy as np
import pytest

from convkit import available_backends
from convkit.backends import KNOWN_BACKENDS

# The checkout's root, so that tests find its files from any working directory.
ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"

BACKENDS = available_backends()
# Backends that sum products directly: exact wherever the arithmetic is (integers, in float).
DIRECT_BACKENDS = [b for b in BACKENDS if KNOWN_BACKENDS[b].direct]
# Each backend agrees within its registry tolerance x sum|K| x max|I| (DESIGN §2: 1e-9 for
# direct sums; FFT round-off is larger and grows with the image).
AGREEMENT = {b: KNOWN_BACKENDS[b].tolerance for b in BACKENDS}


def assert_exact(backend, result, expected):
    """Exact for direct-sum backends; within their tolerance of the response's scale for the
    others."""
    if KNOWN_BACKENDS[backend].direct:
        np.testing.assert_array_equal(result, expected)
    else:
        scale = max(1.0, float(np.abs(np.asarray(expected, dtype=float)).max()))
        np.testing.assert_allclose(result, expected, rtol=0, atol=AGREEMENT[backend] * scale)


PADDINGS = ["replicate", "constant", "reflect", "reflect101", "wrap", "valid"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)
