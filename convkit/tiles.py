"""Images larger than memory: convolution of a dask array, tile by tile.

`convolve_lazy` returns a lazy dask array computed with ``map_overlap``. The borders are
made first, lazily, by padding the whole array with the padding mode's own numpy rule
(``da.pad``) by exactly the kernel's reach on each side — asymmetric for even kernels and
off-centre anchors —, so every mode is exact across chunk borders, ``wrap`` and
``reflect101`` included: a tile's halo is always the image's true neighbourhood, never a
reflection of the tile itself (the class of bug of dask/dask-image#242). The padded array is
then correlated ``valid`` chunk by chunk, each chunk with the kH - 1 rows and kW - 1 columns
that follow it. Chunks smaller than the kernel are merged first.
`convolve_lazy_to_image` goes on to pixels tile by tile.

dask is imported only here, and only when a dask array is filtered (the ``[scale]`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from convkit.errors import UsageError
from convkit.kernels import Kernel
from convkit.padding import Padding

if TYPE_CHECKING:
    import dask.array as da


def is_dask_array(image: object) -> bool:
    """True for a ``dask.array.Array``, without importing dask for anything else."""
    module = type(image).__module__
    return module.startswith("dask.") and hasattr(image, "map_overlap")


def convolve_lazy(
    image: da.Array,
    kernel: Kernel,
    padding: Padding,
    backend: str = "filter2d",
    precision: str = "float64",
) -> da.Array:
    """Correlate a dask array with ``kernel`` (already flipped for true convolution).

    Parameters
    ----------
    image : dask.array.Array
        (H, W) or (H, W, C), any real dtype, any chunks (merged where a chunk is smaller
        than the kernel's reach; channels are not split across chunks).
    kernel : Kernel
        Its anchor sets the halo: ``ay`` rows above, ``kH - 1 - ay`` below, likewise across.
    padding : Padding
        Any mode; ``valid`` shrinks the output as in memory.
    backend, precision
        As for `convkit.convolve`, used on every tile.

    Returns
    -------
    dask.array.Array
        Lazy; the shape and dtype the in-memory call returns.
    """
    dtype = np.dtype(np.float32 if precision == "float32" else np.float64)

    def run(tile: np.ndarray, mode: Padding) -> np.ndarray:
        from convkit.engine import convolve

        return convolve(tile, kernel, padding=mode, backend=backend, precision=precision)

    return _map_tiles(image, kernel, padding, backend, run, dtype)


def convolve_lazy_to_image(
    image: da.Array,
    kernel: Kernel,
    padding: Padding,
    backend: str = "filter2d",
    precision: str = "float64",
    rescale: str = "clip",
    bias: float = 0.0,
    activation: str | None = None,
) -> da.Array:
    """``to_image(convolve_lazy(image, ...), like=image, ...)``, tile by tile through
    `convkit.engine.convolve_to_image`: no tile's float response outlives its task, and
    OpenCV's saturating filter writes the pixels in one pass where that is exact.

    Parameters
    ----------
    image, kernel, padding, backend, precision
        As for `convolve_lazy` (``image`` holds the channels to filter: no alpha).
    rescale : {"clip", "abs", "none"}
        A policy that turns each value into a pixel on its own; ``minmax`` needs the whole
        response's bounds first (see `convkit.tiled`).
    bias, activation
        As for `convkit.postprocess.to_image`.

    Returns
    -------
    dask.array.Array
        Lazy: uint8 or uint16 as the image's depth (float64 under ``none``), the shape the
        in-memory call gives.
    """
    from convkit.postprocess import PER_PIXEL_POLICIES, output_dtype

    if rescale not in (*PER_PIXEL_POLICIES, "none"):
        raise UsageError(
            f"rescale {rescale!r} needs the whole response: filter with convolve_lazy and "
            "stretch its bounds"
        )
    dtype = np.dtype(np.float64) if rescale == "none" else output_dtype(image.dtype)

    def run(tile: np.ndarray, mode: Padding) -> np.ndarray:
        from convkit.engine import convolve_to_image

        return convolve_to_image(
            tile, kernel, padding=mode, backend=backend, precision=precision,
            rescale=rescale, bias=bias, activation=activation,
        )  # fmt: skip

    return _map_tiles(image, kernel, padding, backend, run, dtype)


TileFn = Callable[[np.ndarray, Padding], np.ndarray]


def _map_tiles(
    image: da.Array, kernel: Kernel, padding: Padding, backend: str, run: TileFn, dtype: np.dtype
) -> da.Array:
    """``run(tile, Padding("valid"))`` on every chunk of the image, padded lazily by
    ``padding``'s rule, with the halo of the rows and columns after it; ``run(whole,
    padding)`` on an image smaller than the kernel. The result is the in-memory call's."""
    import dask.array as da

    from convkit.backends import get_backend

    get_backend(backend)  # checked, and its library imported here, not first in a worker thread
    height, width = image.shape[:2]
    kh, kw = kernel.shape
    if padding.mode == "valid" and (kh > height or kw > width):
        raise UsageError(
            f"kernel {kernel.name!r} ({kh}x{kw}) is larger than the image ({height}x{width}) "
            "under padding 'valid': use a smaller kernel or another padding mode"
        )
    if padding.mode != "valid" and (kh > height or kw > width):
        # The padding repeats the whole image more than once: an image this small fits in
        # memory, where numpy's padding does that exactly.
        result = run(image.compute(), padding)
        return da.from_array(result, chunks=result.shape)
    ay, ax = kernel.anchor
    padded = _pad(image, (ay, ax), (kh - 1 - ay, kw - 1 - ax), padding)
    return _valid_tiles(padded, (kh, kw), run, dtype)


def _valid_tiles(
    padded: da.Array, shape: tuple[int, int], run: TileFn, dtype: np.dtype
) -> da.Array:
    """The ``valid`` correlation of a padded array, chunk by chunk: each chunk with the
    kH - 1 rows below it and kW - 1 columns right of it gives the outputs at its own
    positions (the last chunk along an axis, without them, k - 1 fewer)."""
    import dask.array as da

    kh, kw = shape
    padded = _rechunk_for_halo(padded, (kh, kw))  # every chunk holds its neighbour's halo
    depth = {0: (0, kh - 1), 1: (0, kw - 1)}
    chunks = [padded.chunks[0][:-1] + (padded.chunks[0][-1] - kh + 1,),
              padded.chunks[1][:-1] + (padded.chunks[1][-1] - kw + 1,)]  # fmt: skip
    if padded.ndim == 3:
        depth[2] = 0
        chunks.append(padded.chunks[2])

    def filter_tile(tile: np.ndarray) -> np.ndarray:
        return run(tile, Padding("valid"))

    return da.map_overlap(
        filter_tile, padded, depth=depth, boundary="none", trim=False, chunks=tuple(chunks),
        dtype=dtype, meta=np.empty((0,) * padded.ndim, dtype=dtype),
    )  # fmt: skip


def _pad(image: da.Array, before, after, padding: Padding) -> da.Array:
    import dask.array as da

    if padding.mode == "valid":
        return image
    widths = ((before[0], after[0]), (before[1], after[1])) + ((0, 0),) * (image.ndim - 2)
    mode = padding.spec.numpy_mode
    if mode == "constant":
        return da.pad(image, widths, mode="constant", constant_values=padding.cval)
    return da.pad(image, widths, mode=mode)


def _rechunk_for_halo(array: da.Array, reach: tuple[int, int]) -> da.Array:
    """Merge chunks so that each is at least ``reach`` along the first two axes (a halo
    comes from the neighbouring chunk alone) and channels stay in one chunk."""
    chunks = [merged_chunks(array.chunks[axis], reach[axis]) for axis in (0, 1)]
    if array.ndim == 3:
        chunks.append((array.shape[2],))
    chunks = tuple(chunks)
    return array if chunks == array.chunks else array.rechunk(chunks)


def merged_chunks(sizes: tuple[int, ...], least: int) -> tuple[int, ...]:
    """Chunk sizes along one axis, neighbours merged until every one is at least ``least``."""
    if least <= 0:
        return sizes
    merged: list[int] = []
    for size in sizes:
        if merged and merged[-1] < least:
            merged[-1] += size
        else:
            merged.append(size)
    if len(merged) > 1 and merged[-1] < least:
        last = merged.pop()
        merged[-1] += last
    return tuple(merged)
