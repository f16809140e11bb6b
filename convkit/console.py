"""Everything convkit shows on a terminal: tables, notes, progress bars. The only rich importer.

When stdout is not a terminal the output is plain text (no colour, no box drawing), and
``quiet`` keeps everything but errors off the screen.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: the command being run has imported what it needs
    from rich.console import Console
    from rich.table import Table

    from convkit.batch import BatchReport
    from convkit.kernels import Kernel
    from convkit.pipeline import BackendRow, ImageReport
    from convkit.verify import VerifyReport

# rich is imported where it is used, so that a --quiet run that succeeds never loads it.

PROGRESS_DELAY_SECONDS = 1.0


class Screen:
    """Where the command line writes: a results console and an error console."""

    def __init__(self, quiet: bool = False, stdout=None, stderr=None):
        self.quiet = quiet
        self._stdout = stdout
        self._stderr = stderr

    @functools.cached_property
    def out(self) -> Console:
        return _console(self._stdout or sys.stdout)

    @functools.cached_property
    def err(self) -> Console:
        return _console(self._stderr or sys.stderr)

    @property
    def decorated(self) -> bool:
        return self.out.is_terminal

    def note(self, text: str) -> None:
        if self.quiet:
            return
        from rich.text import Text

        style = "yellow" if self.err.is_terminal else ""
        self.err.print(Text(f"note: {one_line(text)}", style=style))

    def line(self, text: str) -> None:
        if self.quiet:
            return
        from rich.text import Text

        self.out.print(Text(one_line(text)))

    def heading(self, text: str) -> None:
        if self.quiet:
            return
        from rich.text import Text

        self.out.print(Text(text, style="bold" if self.decorated else ""))
        if not self.decorated:
            self.out.print(Text("-" * len(text)))

    def error(self, text: str) -> None:
        from rich.text import Text

        style = "bold red" if self.err.is_terminal else ""
        self.err.print(Text(f"Error: {one_line(text)}", style=style))

    def image_report(self, report: ImageReport) -> None:
        """The timing table of one image, then the files written."""
        if self.quiet:
            return
        for note in report.notes:
            self.note(note)
        self.out.print(timing_table(report, self.decorated))
        for result in report.results:
            written = [str(p) for p in (result.output, result.compare) if p is not None]
            self.line(f"wrote {', '.join(written) or 'the filtered image to standard output'}")
            if not result.agrees:
                self.note(
                    f"{result.kernel.name}: backends disagree by more than "
                    f"{result.tolerance:.2g} (see max |diff|)"
                )

    def batch_report(self, batch: BatchReport) -> None:
        """A table over all images, then the summary line and every failure."""
        if not self.quiet:
            for note in dict.fromkeys(n for r in batch.reports for n in r.notes):
                self.note(note)
            if batch.reports:
                self.out.print(batch_table(batch, self.decorated))
            self.line(batch_summary(batch))
        for failure in batch.failures:
            named = failure.image in failure.reason
            self.error(failure.reason if named else f"{failure.image}: {failure.reason}")

    @contextmanager
    def batch_progress(self, total: int) -> Iterator[Callable[[int, int], None] | None]:
        """``on_done(done, total)`` drawing images done / total, rate and time left."""
        if total < 2:
            yield None
            return
        with self.counter_progress("images") as on_done:
            yield on_done

    @contextmanager
    def counter_progress(self, unit: str) -> Iterator[Callable[[int, int], None] | None]:
        """``on_done(done, total)`` drawing a bar of ``unit`` done / total, rate, time left."""
        if self.quiet or not self.err.is_terminal:
            yield None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn(unit), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
            console=self.err, transient=True,
        )  # fmt: skip
        task = bar.add_task(unit, total=None, rate="")
        started = time.monotonic()

        def on_done(done: int, total: int) -> None:
            elapsed = time.monotonic() - started
            rate = f"{done / elapsed:.1f} {unit}/s" if elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        with bar:
            yield on_done

    def verify_report(self, report: VerifyReport) -> None:
        """max |diff| per kernel (rows) and padding (columns), worst over flips; failures."""
        if not self.quiet:
            self.out.print(verify_table(report, self.decorated))
            self.line(verify_summary(report))
        for case in report.failures:
            a, b = case.worst_pair
            flip = " flipped" if case.flip else ""
            self.error(
                f"{case.kernel} ({case.kernel_shape[0]}x{case.kernel_shape[1]}), padding "
                f"{case.padding}{flip}: {a} and {b} differ by {case.max_abs_diff:.3g}, more "
                f"than the tolerance {case.tolerance:.3g}"
            )

    def bench_table(self, cells) -> None:
        """size, kernel, backend, median, min, x fastest; extrapolated cells marked."""
        from rich.table import Table

        from convkit.bench import fastest_ratios

        ratios = fastest_ratios(cells)
        table = Table(box=_box(self.decorated), header_style="bold" if self.decorated else "")
        for column in ("size", "kernel", "backend", "runs", "median ms", "min ms", "x fastest"):
            table.add_column(column, justify="left" if column in ("kernel", "backend") else "right")
        for c in cells:
            mark = " (extrapolated)" if c.extrapolated else ""
            ratio = ratios.get((c.size, c.kernel, c.backend))
            table.add_row(
                f"{c.size}x{c.size}", f"{c.kernel} {c.kernel_shape[0]}x{c.kernel_shape[1]}",
                c.backend + mark, str(c.runs), f"{c.median_ms:.2f}", f"{c.min_ms:.2f}",
                "-" if ratio is None else f"{ratio:.1f}x",
            )  # fmt: skip
        self.out.print(table)

    def kernel_list(self, kernels: Sequence[Kernel], families: dict[str, str]) -> None:
        """The bank (name, size, sum, description), then the parametric families' syntax."""
        from rich.table import Table

        table = Table(box=_box(self.decorated), header_style="bold" if self.decorated else "")
        for column, justify in (("name", "left"), ("size", "right"), ("sum", "right"),
                                ("description", "left")):  # fmt: skip
            table.add_column(column, justify=justify)
        for k in kernels:
            table.add_row(k.name, f"{k.shape[0]}x{k.shape[1]}", _number(k.total), k.description)
        self.out.print(table)
        parametric = Table(box=_box(self.decorated), header_style="bold" if self.decorated else "")
        parametric.add_column("parametric family")
        parametric.add_column("syntax")
        for family, syntax in families.items():
            parametric.add_row(family, syntax)
        self.out.print(parametric)

    def kernel_matrix(self, kernel: Kernel) -> None:
        from rich.text import Text

        kh, kw = kernel.shape
        self.out.print(
            Text(
                f"{kernel.name}  {kh}x{kw}  sum {_number(kernel.total)}"
                f"  anchor (row {kernel.anchor[0]}, col {kernel.anchor[1]})"
            )
        )
        if kernel.description:
            self.out.print(Text(kernel.description))
        cells = [[_number(v) for v in row] for row in kernel.weights]
        width = max(len(c) for row in cells for c in row)
        for row in cells:
            self.out.print(Text("  ".join(c.rjust(width) for c in row)))

    @contextmanager
    def progress(self) -> Iterator[LazyProgress | None]:
        """A progress callback that shows a bar once a task has run for over a second."""
        if self.quiet or not self.err.is_terminal:
            yield None
            return
        bar = LazyProgress(self.err)
        try:
            yield bar
        finally:
            bar.close()


def _console(stream) -> Console:
    """A rich console; off a terminal, wide enough that no table column is ever cut short."""
    from rich.console import Console

    # Paths and kernel names are shown as given: no markup, no emoji codes, no highlighting.
    plain = {"highlight": False, "markup": False, "emoji": False, "soft_wrap": True}
    console = Console(file=stream, **plain)
    if not console.is_terminal:
        console = Console(file=stream, width=1000, **plain)
    return console


def one_line(text: str) -> str:
    r"""``text`` with control characters escaped (a newline in a file name becomes ``\n``),
    so that a message stays on one line.

    Examples
    --------
    >>> print(one_line("a\nb.png"))
    a\nb.png
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class LazyProgress:
    """``progress(label, done, total)`` that only draws a bar after `PROGRESS_DELAY_SECONDS`."""

    def __init__(self, console: Console):
        self.console = console
        self.label: str | None = None
        self.started = 0.0
        self.bar = None
        self.task = None

    def __call__(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        if label != self.label:
            self.label, self.started = label, now
            if self.bar is not None:
                self.bar.update(self.task, description=label, completed=0, total=total)
        if self.bar is None and now - self.started >= PROGRESS_DELAY_SECONDS and done < total:
            self._start(label, total)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)

    def _start(self, label: str, total: int) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

        self.bar = Progress(
            "{task.description}", BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
            console=self.console, transient=True,
        )  # fmt: skip
        self.bar.start()
        self.task = self.bar.add_task(label, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def timing_table(report: ImageReport, decorated: bool) -> Table:
    """kernel, backend, median ms, speed-up vs the readable reference (where it ran), max
    |diff| for one image."""
    from rich.table import Table

    height, width = report.shape[:2]
    channels = report.shape[2] if len(report.shape) == 3 else 1
    table = Table(
        title=f"{one_line(report.image)}  {width}x{height}, {_channels(channels, report.alpha)}",
        box=_box(decorated),
        header_style="bold" if decorated else "",
        title_style="" if not decorated else "bold",
    )
    baseline = report.readable_reference
    columns = ["kernel", "backend", "runs", "median ms", "min ms"]
    columns += [f"vs {baseline}"] if baseline else []
    for column in columns + ["max |diff|"]:
        table.add_column(column, justify="left" if column in ("kernel", "backend") else "right")
    for result in report.results:
        base = next((r for r in result.rows if r.backend == baseline), None)
        for row in result.rows:
            mark = "*" if row.crop else ""
            cells = [
                row.kernel,
                f"{row.backend} ({_crop_size(row.crop)} crop)" if row.crop else row.backend,
                str(row.runs),
                f"{row.median_ms:.2f}{mark}",
                f"{row.min_ms:.2f}{mark}",
            ]
            if base is not None:
                cells.append(f"{base.median_ms / row.median_ms:.1f}x" if row.median_ms else "-")
            cells.append(
                "reference" if row.backend == result.reference else f"{row.max_abs_diff:.2g}"
            )
            table.add_row(*cells)
    crops = {row.crop for row in report.rows if row.crop}
    if crops:
        table.caption = (
            "* timed on the crop, extrapolated to the whole image; max |diff| is measured "
            "on the crop"
        )
    return table


def _crop_size(geometry: str) -> str:
    """``256x256`` from an ImageMagick geometry ``256x256+10+20``."""
    return geometry.split("+", 1)[0]


def batch_table(batch: BatchReport, decorated: bool) -> Table:
    """Per kernel and backend over all images: images, median and total ms, worst |diff|."""
    from rich.table import Table

    groups: dict[tuple[str, str], list[BackendRow]] = {}
    references = {r.kernel.name: r.reference for report in batch.reports for r in report.results}
    for row in batch.rows:
        groups.setdefault((row.kernel, row.backend), []).append(row)
    table = Table(
        title=f"{batch.written} images", box=_box(decorated),
        header_style="bold" if decorated else "", title_style="bold" if decorated else "",
    )  # fmt: skip
    for column in ("kernel", "backend", "images", "median ms", "total ms", "max |diff|"):
        table.add_column(column, justify="left" if column in ("kernel", "backend") else "right")
    for (kernel, backend), rows in groups.items():
        medians = sorted(r.median_ms for r in rows)
        worst = max(r.max_abs_diff for r in rows)
        diff = "reference" if references.get(kernel) == backend else f"{worst:.2g}"
        table.add_row(
            kernel, backend, str(len(rows)), f"{medians[len(medians) // 2]:.2f}",
            f"{sum(r.median_ms * r.runs for r in rows):.0f}", diff,
        )  # fmt: skip
    return table


def verify_table(report: VerifyReport, decorated: bool) -> Table:
    from rich.table import Table

    paddings = list(dict.fromkeys(case.padding for case in report.cases))
    cells: dict[tuple[str, str], list] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for case in report.cases:
        cells.setdefault((case.kernel, case.padding), []).append(case)
        shapes[case.kernel] = case.kernel_shape
    table = Table(
        title="max |diff| between backends (worst over flip)", box=_box(decorated),
        header_style="bold" if decorated else "", title_style="bold" if decorated else "",
    )  # fmt: skip
    table.add_column("kernel", no_wrap=True)
    table.add_column("size", justify="right")
    for padding in paddings:
        table.add_column(padding, justify="right")
    for kernel, shape in shapes.items():
        row = [kernel, f"{shape[0]}x{shape[1]}"]
        for padding in paddings:
            cases = cells.get((kernel, padding), [])
            worst = max((c.max_abs_diff for c in cases), default=None)
            failed = any(not c.agrees for c in cases)
            text = "-" if worst is None else ("0" if worst == 0 else f"{worst:.1e}")
            row.append(f"{text} FAIL" if failed else text)
        table.add_row(*row)
    return table


def verify_summary(report: VerifyReport) -> str:
    """One line: cases, backends, image, verdict, worst margin and time."""
    shape = "x".join(str(n) for n in report.shape[:2])
    head = (
        f"{len(report.cases)} cases, backends {', '.join(report.backends)}, on {report.image} "
        f"({shape}), tolerance {report.factor:g} x sum|K| x max|I|"
    )
    worst = max((c.max_abs_diff / c.tolerance for c in report.cases if c.tolerance), default=0.0)
    if report.failures:
        verdict = f"{len(report.failures)} cases DISAGREE"
    else:
        verdict = f"all agree (the worst case used {worst:.1e} of its tolerance)"
    return f"{head}: {verdict}, in {report.seconds:.1f} s"


def batch_summary(batch: BatchReport) -> str:
    """``wrote 198 of 200 images, 2 failed, 3 other files skipped in 2.1 s (94.3 images/s)``."""
    parts = [f"wrote {batch.written} of {batch.total} images"]
    with_alpha = sum(report.alpha for report in batch.reports)
    if with_alpha:
        parts[0] += f" ({with_alpha} with alpha, carried through unfiltered)"
    if batch.failures:
        parts.append(f"{len(batch.failures)} failed")
    if batch.up_to_date:
        parts.append(f"{batch.up_to_date} up to date (skipped)")
    if batch.skipped:
        parts.append(f"{batch.skipped} other file{'s' * (batch.skipped != 1)} skipped")
    summary = (
        ", ".join(parts) + f" in {batch.seconds:.1f} s ({batch.images_per_second:.1f} images/s)"
    )
    if batch.interrupted:
        summary = (
            f"interrupted: {summary}; no partial files were left, but images being filtered "
            "may have some of their outputs (--skip-existing redoes them)"
        )
    return summary


def _channels(count: int, alpha: bool = False) -> str:
    """``3 channels``, ``1 channel + alpha``: what was filtered, and the alpha carried."""
    return f"{count} channel{'s' * (count > 1)}" + (" + alpha" if alpha else "")


def _box(decorated: bool):
    from rich import box

    return box.SIMPLE_HEAD if decorated else None


def _number(value: float) -> str:
    """A weight as people write it: integers without a point, others to 6 significant digits."""
    rounded = round(value, 9)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{value:.6g}"
