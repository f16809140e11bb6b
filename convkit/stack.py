"""Stacked layers, as in a CNN: kernels and ``relu`` steps applied in order, each to the
previous step's float response (``--stack "sobel_x,relu,sobel_y"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from convkit.engine import convolve
from convkit.errors import KernelError
from convkit.kernels import Kernel, quoted
from convkit.padding import Padding

RELU = "relu"


class Stack(NamedTuple):
    """A named sequence of steps: `Kernel`s and ``"relu"``."""

    name: str
    steps: tuple[Kernel | str, ...]

    @property
    def kernels(self) -> list[Kernel]:
        return [step for step in self.steps if isinstance(step, Kernel)]

    @property
    def shape(self) -> tuple[int, int]:
        """The receptive field: how far one output pixel reaches into the input."""
        kernels = self.kernels
        return (
            sum(k.shape[0] - 1 for k in kernels) + 1,
            sum(k.shape[1] - 1 for k in kernels) + 1,
        )

    @property
    def anchor(self) -> tuple[int, int]:
        """Where the input pixel under an output pixel sits in the receptive field."""
        return (sum(k.anchor[0] for k in self.kernels), sum(k.anchor[1] for k in self.kernels))

    @property
    def abs_sum(self) -> float:
        """An upper bound of how much the stack can amplify: the product of each sum|K|.

        ``inf`` when that product overflows float64 (Python floats overflow quietly).
        """
        return float(math.prod(k.abs_sum for k in self.kernels))

    @property
    def sources(self) -> tuple[Path, ...]:
        """The files the stack's kernels were read from, in order, each once."""
        return tuple(dict.fromkeys(k.source for k in self.kernels if k.source is not None))

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(w for k in self.kernels for w in k.warnings)


def parse_stack(text: str, resolve: Callable[[str], Kernel]) -> Stack:
    """``"sobel_x,relu,sobel_y"``: comma-separated kernel names (or files) and ``relu``.

    ``resolve`` turns one step into a `Kernel` (the command line's kernel lookup).
    """
    names = [part.strip() for part in text.split(",")]
    if not names or any(not n for n in names):
        raise KernelError(f"stack {text!r}: steps are kernel names or relu, separated by commas")
    steps = tuple(RELU if n.lower() == RELU else resolve(n) for n in names)
    if not any(isinstance(step, Kernel) for step in steps):
        raise KernelError(f"stack {text!r} has no kernel in it")
    return Stack(",".join(names), steps)


def run_stack(
    image: np.ndarray,
    stack: Stack,
    padding: Padding,
    backend: str,
    flip: bool = False,
    progress: Callable[[int, int], None] | None = None,
    precision: str = "float64",
) -> list[np.ndarray]:
    """Every step's float response, in order; the last one is the stack's.

    Raises
    ------
    KernelError
        For a step that is neither a `Kernel` nor ``"relu"`` (a stack built by hand).
    """
    for step in stack.steps:
        if not isinstance(step, Kernel) and step != RELU:
            raise KernelError(
                f"stack {stack.name!r}: step {quoted(step)} is neither a kernel nor relu"
            )
    responses = []
    current = image
    for step in stack.steps:
        if isinstance(step, Kernel):
            current = convolve(current, step, padding=padding, backend=backend, flip=flip,
                               progress=progress, precision=precision, cast=False)  # fmt: skip
        else:
            current = np.maximum(current, 0.0)
        responses.append(current)
    return responses
