import numpy as np
import pytest

from convkit import available_backends

BACKENDS = available_backends()
PADDINGS = ["replicate", "constant", "reflect", "reflect101", "wrap", "valid"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)
