"""The output plan: every path a run will write, named and checked before anything is written.

A run reads images, kernel files and ``@file`` kernels, and writes filtered images,
comparison PNGs, ``.npy`` responses, reports and pictures. Before the first byte is written,
every output is resolved (symbolic links followed) and

- checked against every path the run reads: an output that would replace an input is a
  `UsageError` naming both, and nothing is written;
- checked against the run's other outputs: two outputs that would share a name get distinct
  names by one rule (`claim_name`), never a silent overwrite.

The naming rule, in the order the run meets its outputs (images in input order, kernels in
command-line order):

1. an image whose stem an earlier image already uses in the same output folder keeps its
   suffix in its outputs' names: ``a.jpg`` and ``a.png`` write ``a_sharpen.png`` and
   ``a.png_sharpen.png``;
2. an output name that is still taken gets ``-2``, ``-3``... after the kernel's part:
   ``--kernel sharpen --kernel dir/sharpen_compare.txt`` writes ``img_sharpen_compare.png``
   (the comparison of ``sharpen``) and ``img_sharpen_compare-2.png``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from convkit.errors import UsageError


def resolved(path: str | Path) -> Path:
    """The absolute path with every symbolic link followed, also for files not yet there."""
    return Path(path).resolve(strict=False)


class OutputPlan:
    """The paths one run reads, and the outputs claimed so far.

    Parameters
    ----------
    reads : iterable of path
        Every file the run reads: images, kernel files, ``@file`` kernels.
    """

    def __init__(self, reads: Iterable[str | Path] = ()) -> None:
        self._reads: dict[Path, Path] = {}
        self._claimed: dict[Path, Path] = {}
        self.tiled: list[bool] = []  # per image of an apply run: filtered in tiles
        for path in reads:
            self._reads.setdefault(resolved(path), Path(path))

    def is_free(self, path: Path) -> bool:
        """True when no earlier output of the run claimed ``path``."""
        return resolved(path) not in self._claimed

    def claim(self, path: str | Path, what: str = "output") -> Path:
        """Reserve ``path`` for one output.

        Raises
        ------
        UsageError
            If ``path`` is one of the run's inputs, is a folder, or is already claimed by
            another output (`claim_name` avoids that for names the run makes itself).
        """
        path = Path(path)
        key = resolved(path)
        source = self._reads.get(key)
        if source is not None:
            raise UsageError(
                f"refusing to overwrite the input {source} with the {what} {path}: "
                "choose another output name or folder"
            )
        if key in self._claimed:
            raise UsageError(f"the {what} {path} would replace the output {self._claimed[key]}")
        if path.is_dir():
            raise UsageError(f"the {what} {path} is a folder: give a file name")
        self._claimed[key] = path
        return path

    def claim_name(self, folder: Path, stem: str, suffixes: Sequence[str]) -> list[Path]:
        """``folder/<stem><suffix>`` for each suffix, with ``-2``, ``-3``... added to the stem
        until no earlier output of the run holds any of them; all of them are claimed."""
        for attempt in range(1, 1_000_000):
            name = stem if attempt == 1 else f"{stem}-{attempt}"
            paths = [folder / f"{name}{suffix}" for suffix in suffixes]
            if all(self.is_free(p) for p in paths):
                return [self.claim(p) for p in paths]
        raise UsageError(f"no free output name for {folder / stem}")  # pragma: no cover


def image_stems(names: Sequence[tuple[Path, str, str]]) -> list[str]:
    """The stem each image's outputs are named after, by rule 1 of this module.

    ``names`` holds, per image: its output folder, its stem and its full file name.
    """
    seen: set[tuple[Path, str]] = set()
    stems = []
    for folder, stem, full_name in names:
        key = (resolved(folder), stem)
        stems.append(full_name if key in seen else stem)
        seen.add(key)
    return stems
