"""convkit: apply convolution kernels to images, compare backends, and show the work.

Examples
--------
>>> import numpy as np, convkit
>>> image = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.uint8)
>>> convkit.convolve(image, [[0, 1], [1, 0]], padding="valid")
array([[ 6.,  8.],
       [12., 14.]])
"""

from convkit.backends import available_backends
from convkit.engine import convolve
from convkit.errors import ConvkitError, KernelError, KernelParseError, UsageError
from convkit.explain import Explanation, explain
from convkit.kernel_files import load_kernel, parse_kernel
from convkit.kernels import Kernel, get_kernel
from convkit.postprocess import to_image

__version__ = "0.1.0"

__all__ = [
    "ConvkitError",
    "Explanation",
    "Kernel",
    "KernelError",
    "KernelParseError",
    "UsageError",
    "available_backends",
    "convolve",
    "explain",
    "get_kernel",
    "load_kernel",
    "parse_kernel",
    "to_image",
]
