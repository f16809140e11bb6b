"""The command line: click commands, each parsing options, calling the library once, and
handing the result to `convkit.console`. Errors become one line and the exit code of DESIGN §6.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, NoReturn

import click

from convkit import __version__
from convkit.errors import (
    EXIT_INTERRUPTED,
    EXIT_RUN_ERROR,
    ConvkitError,
    Interrupted,
    UsageError,
)
from convkit.imageio import DEFAULT_MAX_PIXELS
from convkit.padding import DEFAULT_PADDING, PADDING_ALIASES, PADDING_MODES
from convkit.postprocess import ACTIVATIONS, RESCALE_POLICIES


class Failed(click.ClickException):
    """A `ConvkitError` on its way out: printed as ``Error: message``, then its exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class ConvkitGroup(click.Group):
    """Turns every error into one ``Error:`` line (plus at most one hint) and its exit code;
    tracebacks only with CONVKIT_DEBUG=1."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            with native_messages_silenced():
                code = super().main(args, prog_name, complete_var, False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # bare `convkit`: the help, exit 0
            click.echo(exc.ctx.get_help())
            code = 0
        except click.ClickException as exc:
            _show_error(exc.format_message(), _hint(exc))
            code = exc.exit_code
        except click.Abort as exc:  # click's word for Ctrl-C (or end of input) while parsing
            interrupted = exc.__context__
            _show_error("interrupted")
            code = getattr(interrupted, "exit_code", EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ConvkitError as exc:
            if os.environ.get("CONVKIT_DEBUG") == "1":
                raise
            raise Failed(str(exc), exc.exit_code) from None
        except KeyboardInterrupt as exc:
            _show_error(f"interrupted by {_signal_name(exc)}")
            ctx.exit(getattr(exc, "exit_code", EXIT_INTERRUPTED))
        except Exception as exc:  # noqa: BLE001 - the last guard before a user sees a traceback
            if os.environ.get("CONVKIT_DEBUG") == "1":
                raise
            message = f"internal error: {type(exc).__name__}: {exc} (CONVKIT_DEBUG=1 shows more)"
            raise Failed(message, EXIT_RUN_ERROR) from None


# click 8.2 and later raise this for a bare group; earlier ones print the help themselves.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _show_error(message: str, hint: str | None = None) -> None:
    """``Error: message`` on one line (control characters escaped), and an optional hint."""
    from convkit.console import one_line

    lines = [f"Error: {one_line(message)}"] + ([hint] if hint else [])
    with contextlib.suppress(OSError, ValueError, AttributeError):  # stderr closed or full
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()


def _hint(exc: click.ClickException) -> str | None:
    """``Try 'convkit apply --help'.`` after a usage error, as click says it."""
    if not isinstance(exc, click.UsageError):
        return None
    ctx = getattr(exc, "ctx", None)
    return f"Try '{ctx.command_path if ctx else 'convkit'} --help' for help."


def _signal_name(exc: BaseException) -> str:
    signum = getattr(exc, "signum", signal.SIGINT)
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


@click.group(cls=ConvkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convkit")
def main() -> None:
    """Apply convolution kernels to images, compare backends, and show the work."""


STOPPING_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
MAX_REPEAT = 1000  # --repeat: enough for any median; more is a typo


def run() -> NoReturn:
    """The ``convkit`` console script: run `main`, then leave without the interpreter's teardown.

    Before the command: closed standard streams are reopened on /dev/null (so that no output
    file can be given their descriptor, and no write meets a closed stream) and remembered as
    closed; SIGTERM and SIGHUP stop the run the way Ctrl-C does (`install_signal_handlers`).
    After it: if standard output could not be written (closed, full), the run fails with
    exit 1 unless it failed already; a reader that went away (``| head -1``) is no error.

    When a command returns, its outputs are already renamed into place; what is left is
    flushing the two streams. Unloading numpy's and OpenCV's modules after that takes about
    30 ms, a sixth of a small job's wall time when a shell loop starts convkit once per file
    (benchmarks/startup.py). A run that started worker processes exits normally, so that
    their exit handlers still run.
    """
    closed = reopen_closed_standard_streams()
    out = GuardedStream(sys.stdout, closed=1 in closed)
    err = GuardedStream(sys.stderr, closed=2 in closed)
    sys.stdout, sys.stderr = out, err
    install_signal_handlers()
    if os.environ.get("CONVKIT_DEBUG") != "1":
        # DESIGN §7: no Python or numpy warning reaches the user as an extra line; what a
        # warning would mean (overflow, NaN) is checked and reported as an error instead.
        warnings.simplefilter("ignore")
    try:
        main.main(prog_name="convkit")
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except KeyboardInterrupt as exc:  # a signal while click was still starting or ending
        code = getattr(exc, "exit_code", EXIT_INTERRUPTED)
    for stream in (out, err):
        stream.flush()
    if out.error is not None and code == 0:
        _show_error(f"cannot write to standard output: {out.error}")
        code = EXIT_RUN_ERROR
    if "multiprocessing" in sys.modules:
        sys.exit(code)
    os._exit(code)


@contextlib.contextmanager
def native_messages_silenced() -> Iterator[None]:
    """Keep what C libraries print off the terminal while a command runs; restore after.

    libpng and libjpeg write their complaints about a corrupt file straight to file
    descriptor 2, where no Python code can catch them, and OpenCV logs there too: a bad
    image would print lines besides convkit's one ``Error:`` line (DESIGN §7). So, unless
    ``CONVKIT_DEBUG=1``: Python's standard error moves to a duplicate of descriptor 2,
    descriptor 2 itself to /dev/null (worker processes inherit both), and OpenCV's log level
    is silent (``OPENCV_LOG_LEVEL``, unless set, for a cv2 not yet imported). This is the
    command line's business: the library leaves a host program's descriptors and log level
    alone.
    """
    if os.environ.get("CONVKIT_DEBUG") == "1":
        yield
        return
    try:
        duplicate = os.dup(2)
    except OSError:  # no descriptor 2 at all: nothing to silence
        yield
        return
    stream, moved = sys.stderr, _on_descriptor(sys.stderr, 2)
    if moved:
        sys.stderr = _moved_stream(stream, duplicate)
    level = _silence_opencv_log()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(duplicate, 2)
        os.close(duplicate)
        if moved:
            sys.stderr = stream
        level()


def _on_descriptor(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # a captured stream (tests, CliRunner)
        return False


def _moved_stream(stream, duplicate: int):
    """``stream`` (standard error, maybe guarded) writing to descriptor ``duplicate``."""
    inner = stream._stream if isinstance(stream, GuardedStream) else stream
    encoding = getattr(inner, "encoding", None) or "utf-8"
    errors = getattr(inner, "errors", None) or "backslashreplace"
    moved = open(duplicate, "w", buffering=1, encoding=encoding, errors=errors, closefd=False)  # noqa: SIM115
    return (
        GuardedStream(moved, closed=stream.error is not None)
        if isinstance(stream, GuardedStream)
        else moved
    )


def _silence_opencv_log():
    """OpenCV's log silent; returns what undoes it."""
    if "cv2" not in sys.modules:
        if "OPENCV_LOG_LEVEL" in os.environ:
            return lambda: None
        os.environ["OPENCV_LOG_LEVEL"] = "SILENT"  # read when cv2 is imported
        return lambda: os.environ.pop("OPENCV_LOG_LEVEL", None)
    logging = sys.modules["cv2"].utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    return lambda: logging.setLogLevel(previous)


def reopen_closed_standard_streams() -> set[int]:
    """Open /dev/null on each of descriptors 0, 1 and 2 that is closed; return those."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    for fd in sorted(closed):  # os.open takes the lowest free descriptor: fd itself
        os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
    if 0 in closed:
        sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    return closed


class GuardedStream:
    """A text stream whose failed writes (closed, full, broken pipe) are remembered, not
    raised: the run goes on, its files are written, and `run` decides the exit code."""

    def __init__(self, stream, closed: bool = False):
        self._stream = stream
        self.error: str | None = "the stream is closed" if closed or stream is None else None
        self.broken_pipe = False

    def write(self, text: str) -> int:
        if self.error is None and not self.broken_pipe:
            self._guard(self._stream.write, text)
        return len(text)

    def flush(self) -> None:
        if self.error is None and not self.broken_pipe:
            self._guard(self._stream.flush)

    def _guard(self, operation, *args) -> None:
        try:
            operation(*args)
        except BrokenPipeError:  # the reader went away: stop writing, no error
            self.broken_pipe = True
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError) as exc:
            self.error = getattr(exc, "strerror", None) or str(exc)

    def isatty(self) -> bool:
        return self.error is None and self._stream.isatty()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise `Interrupted` as Ctrl-C does, so that the same clean-up runs
    (temporary files removed, workers stopped) and the run exits 128 + N. SIGINT is left
    ignored where the shell ignores it (a script's background job)."""
    for name in STOPPING_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None or signal.getsignal(signum) == signal.SIG_IGN:
            continue
        signal.signal(signum, _interrupt)


_stopping = False


def _interrupt(signum: int, frame) -> None:
    """Raise `Interrupted` once: a second signal while the run cleans up is let pass.

    (A flag rather than SIG_IGN: ignoring a signal that is already pending makes Python
    raise OSError in the middle of the clean-up.)"""
    global _stopping
    if _stopping:
        return
    _stopping = True
    raise Interrupted(signum)


def _exit_status(code: object) -> int:
    """What `sys.exit(code)` would make of CODE: None is 0, an int itself, anything else 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    _show_error(str(code))
    return 1


class FiniteFloat(click.ParamType):
    """A float that is neither NaN nor infinite (click's FLOAT takes both)."""

    name = "number"

    def __init__(self, minimum: float | None = None):
        self.minimum = minimum

    def convert(self, value, param, ctx) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.minimum is not None and number < self.minimum:
            self.fail(f"{value!r} is less than {self.minimum:g}", param, ctx)
        return number


class Size(click.ParamType):
    """A size in bytes: ``256M``, ``2G``, ``1.5GiB`` or a plain number."""

    name = "size"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        from convkit.resources import parse_size

        try:
            return parse_size(str(value))
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


class BackendOption(click.Option):
    """``--backend``, whose help lists the registry's backends when it is shown: a backend
    added with `convkit.backends.register_backend` is listed too."""

    def get_help_record(self, ctx):
        from convkit.backends import KNOWN_BACKENDS
        from convkit.pipeline import REFERENCE_BUDGET_SECONDS, default_backends

        *names, last = KNOWN_BACKENDS
        reference, fast = default_backends()
        self.help = (
            f"{', '.join(names)} or {last}. Repeatable. Default: {reference} and {fast} "
            f"({reference} left out when it would take over ~{REFERENCE_BUDGET_SECONDS:g} s)."
        )
        return super().get_help_record(ctx)


def padding_options(command):
    names = ", ".join(PADDING_MODES)
    aliases = ", ".join(f"{a}={c}" for a, c in PADDING_ALIASES.items())

    @click.option(
        "--padding", default=DEFAULT_PADDING, show_default=True, metavar="MODE",
        help=f"Border handling: {names} (aliases {aliases}).",
    )  # fmt: skip
    @click.option("--cval", type=FiniteFloat(), default=0.0, show_default=True,
                  help="The value outside the image for --padding constant.")  # fmt: skip
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, **kwargs)

    return wrapper


def _parse_anchor(ctx, param, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        row, column = (int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not Y,X (two whole numbers: row, column)") from None
    return row, column


def complete_kernel(ctx, param, incomplete: str) -> list:
    """Shell completion for --kernel: bank names, ``all``, the parametric families, files."""
    from click.shell_completion import CompletionItem

    from convkit.kernels import BANK, PARAMETRIC_USAGE

    if "/" in incomplete or incomplete.startswith((".", "~", "@")):
        return [CompletionItem(incomplete, type="file")]
    listed, _, last = incomplete.rpartition(",")  # a list: complete its last name
    prefix = f"{listed}," if listed else ""
    names = [*BANK, "all", *(f"{family}:" for family in PARAMETRIC_USAGE)]
    return [CompletionItem(prefix + name) for name in names if name.startswith(last)]


# Options that several commands take, defined once.
normalize_option = click.option(
    "--normalize", is_flag=True, help="Divide each kernel by its sum (if not 0)."
)
scale_option = click.option(
    "--scale", type=FiniteFloat(), default=None, help="Multiply each kernel by S."
)
anchor_option = click.option(
    "--anchor", callback=_parse_anchor, metavar="Y,X", default=None,
    help="The kernel cell (row Y, column X) over the output pixel. Default: OpenCV's "
         "(kH // 2, kW // 2), or an ImageMagick origin.",
)  # fmt: skip
flip_option = click.option(
    "--flip", is_flag=True, help="True convolution: rotate the kernel by 180 degrees."
)
gray_option = click.option("--gray", is_flag=True, help="Convert to grey (OpenCV's weights) first.")
no_auto_orient_option = click.option(
    "--no-auto-orient", is_flag=True,
    help="Keep the stored pixel order of photos with an EXIF orientation (default: turn them "
         "upright, as viewers show them).",
)  # fmt: skip
rescale_option = click.option(
    "--rescale", type=click.Choice(RESCALE_POLICIES), default="clip", show_default=True,
    help="Response -> image: clip to range, abs then clip, stretch min..max, or none (the "
         "float response; apply writes it as .npy).",
)  # fmt: skip
bias_option = click.option(
    "--bias", type=FiniteFloat(), default=0.0, show_default=True,
    help="Added to the response before activation and rescaling.",
)  # fmt: skip
activation_option = click.option(
    "--activation", type=click.Choice(ACTIVATIONS), default=None,
    help="Applied after the bias: relu is max(0, x).",
)  # fmt: skip


def kernel_options(command):
    @click.option("--kernel", "-k", "kernel_values", multiple=True,
                  metavar="NAME[,NAME...]|PATH|MATRIX", shell_complete=complete_kernel,
                  help='A bank name, "all", a parametric name (box:N, gaussian:N[:SIGMA], '
                       "log:N[:SIGMA], motion:N[:ANGLE]), or several names separated by commas "
                       '("sobel_x,sobel_y"); a kernel file or @file; an inline matrix '
                       '"0,-1,0; -1,5,-1; 0,-1,0"; N*N bare numbers (an NxN kernel, as in '
                       'ImageMagick); or an ImageMagick string "3x3+1+1: ..." (without +X+Y, '
                       "ImageMagick's default origin). Repeatable.")  # fmt: skip
    @click.option(
        "--kernel-file",
        "kernel_files",
        multiple=True,
        metavar="PATH",
        help="A kernel file (.txt, .csv, .npy, .json, libvips .mat). Repeatable.",
    )
    @click.option("--stack", "stacks", multiple=True, metavar="STEPS",
                  help='Layers applied in order, as in a CNN: "sobel_x,relu,sobel_y" (kernel '
                       "names or files, and relu). Repeatable.")  # fmt: skip
    @normalize_option
    @scale_option
    @anchor_option
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, **kwargs)

    return wrapper


def output_options(command):
    @click.option(
        "--out",
        "-o",
        "out_dir",
        default="convkit-out",
        show_default=True,
        metavar="DIR|-",
        help="Output folder; - writes the one filtered image to standard output as PNG.",
    )
    @rescale_option
    @bias_option
    @activation_option
    @click.option("--no-compare", is_flag=True, help="Skip the comparison PNG.")
    @click.option(
        "--report",
        "report_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the timing rows to PATH.json or PATH.csv.",
    )
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, **kwargs)

    return wrapper


@main.command()
@click.argument("image_arguments", nargs=-1, metavar="[IMAGE]...")
@click.option("--image", "-i", "image_values", multiple=True, metavar="PATH|DIR|GLOB|-",
              help='An image, a folder of images, a quoted glob ("shots/*.jpg"), or - for '
                   "standard input, as IMAGE arguments are. Repeatable.")  # fmt: skip
@click.option(
    "--recursive",
    "-r",
    is_flag=True,
    help="Descend into subfolders; outputs mirror their layout under --out.",
)
@kernel_options
@padding_options
@click.option("--backend", "-b", "backends", cls=BackendOption, multiple=True, metavar="NAME")
@flip_option
@click.option("--precision", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True,
              help="float32 halves the memory traffic at ~1e-7 relative round-off.")  # fmt: skip
@gray_option
@no_auto_orient_option
@output_options
@click.option("--format", "output_format", type=click.Choice(["png", "jpg", "tif", "webp"]),
              default=None, help="The filtered images' format (default png; with --rescale "
                                 "none, tif writes 32-bit float instead of .npy).")  # fmt: skip
@click.option("--quality", type=click.IntRange(1, 100), default=None,
              help="jpg and webp quality, 1-100 (default 95 for jpg, 90 for webp; webp 100 "
                   "is lossless).")  # fmt: skip
@click.option("--repeat", type=click.IntRange(1, MAX_REPEAT), default=1, show_default=True,
              help="Run each backend N times; the table shows median and min.")  # fmt: skip
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes for a batch. Default: the number of cores.",
)
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
              show_default=True, help="Refuse larger images (read from the header).")  # fmt: skip
@click.option("--max-memory", type=Size(), default=None, metavar="SIZE",
              help="Refuse a kernel and backend whose estimated peak memory exceeds SIZE "
                   "(256M, 2G). Default: half the physical memory.")  # fmt: skip
@click.option("--scheduler", default=None, metavar="ADDRESS|local[:N]",
              help="Run the images as tasks on a dask cluster: tcp://HOST:PORT of a running "
                   "scheduler (the workers must see the same files at the same paths), or "
                   "local[:N] for N local worker processes. Needs the [scale] extra.")  # fmt: skip
@click.option("--skip-existing", is_flag=True,
              help="Skip an image whose outputs all exist and are newer than it (resume an "
                   "interrupted batch).")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="Print errors only.")
def apply(image_arguments, image_values, recursive, kernel_values, kernel_files, stacks,
          normalize, scale, anchor, padding, cval, backends, flip, precision, gray,
          no_auto_orient, out_dir, rescale, bias, activation, no_compare, report_path,
          output_format, quality, repeat, jobs, max_pixels, max_memory, scheduler,
          skip_existing, quiet):  # fmt: skip
    """Filter IMAGEs (files, folders, globs or - for standard input) with one or more
    kernels, on one or more backends.

    Writes OUT/<image>_<kernel>.png, OUT/<image>_<kernel>_compare.png and a timing table.

    Example: convkit apply sample_images/chelsea.png --kernel sobel_x
    """
    from convkit.batch import expand_inputs
    from convkit.console import Screen
    from convkit.pipeline import ApplySettings, plan_outputs
    from convkit.resources import default_max_memory

    if anchor is not None and stacks:
        raise UsageError(
            "--anchor sets the anchor of --kernel kernels, not of a --stack's steps: "
            "give the stack's kernels as ImageMagick strings with an origin (3x3+0+0: ...)"
        )
    kernels = _kernels(kernel_values, kernel_files, normalize, scale, anchor, bool(stacks))
    kernels += _stacks(stacks)
    to_stdout = out_dir == "-"
    if to_stdout and sys.stdout.isatty():
        kind = (output_format or "png").upper()
        raise UsageError(
            f"refusing to write a {kind} to a terminal: redirect standard output, or give --out DIR"
        )
    settings = ApplySettings(
        padding=_padding(padding, cval), backends=_backends(backends), flip=flip, gray=gray,
        rescale=rescale, bias=bias, activation=activation, repeat=repeat,
        out_dir=None if to_stdout else Path(out_dir), compare=not (no_compare or to_stdout),
        precision=precision, max_pixels=max_pixels,
        max_memory=default_max_memory() if max_memory is None else max_memory,
        format=output_format, quality=quality, auto_orient=not no_auto_orient,
    )  # fmt: skip
    _check_format_options(output_format, quality)
    if scheduler is not None:
        from convkit.cluster import parse_scheduler

        if jobs is not None:
            raise UsageError(
                "--jobs and --scheduler exclude each other (--scheduler local:N starts N local "
                "workers)"
            )
        scheduler = str(parse_scheduler(scheduler))  # a usage error before anything else
    if report_path is not None:
        from convkit.report import check_report_path

        check_report_path(report_path)
    values = image_arguments + image_values
    if not values:
        raise UsageError("no image given: name images, folders or globs (or - for standard input)")
    inputs = expand_inputs(values, recursive, read_stdin=_stdin_reader(max_pixels))
    if to_stdout:
        _check_stdout_run(inputs, kernels, rescale, output_format)
    plan, outputs = plan_outputs(inputs.images, kernels, settings)
    if report_path is not None:
        plan.claim(report_path, "report")
    if any(plan.tiled):
        from convkit.tiled import limit_heap_retention

        limit_heap_retention()  # freed bands go back to the system, not into the heap
    if skip_existing:
        from convkit.batch import drop_up_to_date

        outputs = drop_up_to_date(inputs, outputs)
    # With --out - standard output carries the image: everything else goes to stderr.
    screen = Screen(quiet=quiet, stdout=sys.stderr if to_stdout else None)
    for warning in (w for k in kernels for w in k.warnings):
        screen.note(warning)
    if not inputs.images:
        count = inputs.up_to_date
        screen.line(
            f"{'all ' * (count > 1)}{count} image{'s' * (count > 1)} up to date (--skip-existing)"
        )
        rows, code = [], 0
    elif len(inputs.images) == 1 and not (inputs.skipped or inputs.up_to_date or scheduler):
        rows = _apply_one(screen, inputs.images[0], kernels, settings, outputs[0])
        code = 0
    else:
        rows, code = _apply_batch(
            screen, inputs, kernels, settings, jobs or os.cpu_count() or 1, outputs, scheduler
        )  # fmt: skip
    if report_path is not None and rows:
        from convkit.report import write_report

        write_report([row.as_dict() for row in rows], report_path, __version__)
        screen.line(f"wrote {report_path}")
    if code:
        sys.exit(code)


def _apply_one(screen, image, kernels, settings, outputs):
    """One image: errors stop the run with their own exit code."""
    from convkit.pipeline import apply_image

    with screen.progress() as progress:
        report = apply_image(image, kernels, settings, progress, outputs=outputs)
    if report.stdout_bytes is not None:
        _write_stdout_image(report.stdout_bytes)
    screen.image_report(report)
    return report.rows


def _write_stdout_image(data: bytes) -> None:
    """The filtered image on standard output; a failed write is a run error (exit 1)."""
    from convkit.errors import ImageWriteError

    stream = getattr(sys.stdout, "error", None)
    if stream is not None:  # closed before the run started
        raise ImageWriteError(f"cannot write the image to standard output: {stream}")
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ImageWriteError(f"cannot write the image to standard output: {reason}") from None


def _apply_batch(screen, inputs, kernels, settings, jobs, outputs, scheduler=None):
    """Many images: each failure is recorded, the rest go on; exit 1 if any failed."""
    from convkit.batch import run_batch

    with screen.batch_progress(len(inputs.images)) as on_done:
        batch = run_batch(
            inputs.images, kernels, settings, jobs, on_done, skipped=len(inputs.skipped),
            outputs=outputs, up_to_date=inputs.up_to_date, scheduler=scheduler,
        )  # fmt: skip
    screen.batch_report(batch)
    return batch.rows, batch.return_code


def _check_format_options(output_format: str | None, quality: int | None) -> None:
    if quality is not None and output_format not in ("jpg", "webp"):
        raise UsageError(
            f"--quality is for --format jpg or webp, not {output_format or 'png (the default)'}"
        )


def _check_stdout_run(inputs, kernels, rescale: str, output_format: str | None) -> None:
    if len(inputs.images) != 1 or len(kernels) != 1:
        raise UsageError(
            f"--out - writes one image: give one image and one kernel "
            f"(got {len(inputs.images)} images and {len(kernels)} kernels)"
        )
    if rescale == "none" and output_format != "tif":
        raise UsageError(
            "--out - writes an image: --rescale none (float .npy) needs an --out folder, "
            "or --format tif (32-bit float)"
        )


def _stdin_reader(max_pixels: int):
    """Reads the image on standard input, refusing a terminal (as gzip does), its size
    checked from its header before the rest is read."""

    def read() -> bytes:
        from convkit.imageio import read_stdin_image_bytes

        if sys.stdin.isatty():
            raise UsageError("refusing to read an image from a terminal: redirect standard input")
        return read_stdin_image_bytes(sys.stdin.buffer, max_pixels=max_pixels)

    return read


@main.command()
@click.option(
    "--image",
    "-i",
    "image_path",
    type=click.Path(path_type=Path),
    default=None,
    help="The image to check on (default: a built-in 512x512 test card).",
)
@click.option(
    "--backend",
    "-b",
    "backends",
    multiple=True,
    metavar="NAME",
    help="Backends to compare (repeatable). Default: every available one.",
)
@click.option(
    "--tolerance",
    type=FiniteFloat(minimum=0),
    default=None,
    help="Allowed |diff| as a multiple of sum|K| x max|I|. Default: the loosest tolerance "
    "that the compared backends' registry entries give.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print disagreements only.")
def verify(image_path, backends, tolerance, quiet):
    """Run every backend over every padding, flip and kernel; exit 1 if any two disagree.

    Example: convkit verify --image sample_images/camera.png
    """
    from convkit.console import Screen
    from convkit.verify import run_verify, synthetic_image

    if image_path is None:
        image, name = synthetic_image(), "the built-in test card"
    else:
        from convkit.imageio import read_image

        image, name = read_image(image_path), str(image_path)
    screen = Screen(quiet=quiet)
    with screen.counter_progress("cases") as progress:
        report = run_verify(image, name, backends or None, tolerance, progress=progress)
    screen.verify_report(report)
    if report.failures:
        sys.exit(EXIT_RUN_ERROR)


@main.command()
@click.option(
    "--sizes",
    default="512,2048",
    show_default=True,
    metavar="N,N,...",
    help="Square image sizes to time.",
)
@click.option(
    "--kernels",
    "kernel_names",
    default="sharpen,small_blur,large_blur,motion:21:30",
    show_default=True,
    metavar="NAME,NAME,...",
    help="Kernels to time.",
)
@click.option(
    "--backends",
    "backend_names",
    default=None,
    metavar="NAME,NAME,...",
    help="Backends to time. Default: every available one.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, MAX_REPEAT),
    default=3,
    show_default=True,
    help="Runs per cell (the naive loop runs once).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the cells to PATH.json or PATH.csv.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Draw time against kernel size as PATH.png (needs matplotlib).",
)
@click.option("--calibrate", is_flag=True,
              help="Measure this machine's cross-overs for the auto backend and store them in "
                   "the user's cache folder (CONVKIT_CACHE_DIR), as FFTW stores its wisdom; "
                   "auto then uses them. Measures on all of OpenCV's threads and on one (as "
                   "in --jobs workers); takes about 10 minutes on 2 cores; calibrate when the "
                   "machine is about as busy as when it filters.")  # fmt: skip
def bench(sizes, kernel_names, backend_names, repeat, report_path, plot_path, calibrate):
    """Time every backend over image sizes and kernels: median and min ms, and x fastest.

    Example: convkit bench --sizes 512,2048 --kernels sharpen,large_blur
    """
    from convkit.bench import run_bench
    from convkit.console import Screen
    from convkit.kernel_files import resolve_kernel

    if calibrate:
        _calibrate(Screen())
        return

    sizes = _numbers(sizes, "--sizes")
    kernels = [resolve_kernel(name, name) for name in _names(kernel_names)]
    backends = _names(backend_names) if backend_names else None
    _plan_bench_outputs(report_path, plot_path)
    screen = Screen()
    with screen.counter_progress("cells") as progress:
        cells = run_bench(sizes, kernels, backends, repeat, progress)
    screen.bench_table(cells)
    if report_path is not None:
        from convkit.report import BENCH_FIELDS, write_report

        write_report([c.as_dict() for c in cells], report_path, __version__, BENCH_FIELDS)
        screen.line(f"wrote {report_path}")
    if plot_path is not None:
        from convkit.bench import plot_bench

        plot_bench(cells, plot_path)
        screen.line(f"wrote {plot_path}")


def _calibrate(screen) -> None:
    """``bench --calibrate``: time auto's strategies here and store the fitted model."""
    from convkit.calibration import calibrate
    from convkit.errors import ImageWriteError

    with screen.counter_progress("cells") as progress:
        try:
            done = calibrate(progress=progress)
        except OSError as exc:
            raise ImageWriteError(f"cannot store the calibration: {exc}") from None
    threads = ", ".join(str(count) for count in done.threads)
    screen.line(
        f"measured {len(done.samples)} timings for each OpenCV thread count ({threads}) in "
        f"{done.seconds:.0f} s; auto now uses {done.path}"
    )


def _plan_bench_outputs(report_path: Path | None, plot_path: Path | None) -> None:
    """Check the report and the plot before hours of timing: names, clashes, matplotlib."""
    from convkit.plan import OutputPlan

    plan = OutputPlan()
    if report_path is not None:
        from convkit.report import check_report_path

        plan.claim(check_report_path(report_path), "report")
    if plot_path is not None:
        plan.claim(plot_path, "plot")
        try:
            import matplotlib  # noqa: F401 - only to know, before the timing, that it is there
        except ImportError:
            raise UsageError('--plot needs matplotlib: pip install "convkit[plot]"') from None


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _numbers(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in _names(text)]
    except ValueError:
        raise UsageError(f"{option} {text!r}: give whole numbers separated by commas") from None
    if not values or min(values) < 1 or max(values) > 16384:
        raise UsageError(f"{option} {text!r}: sizes go from 1 to 16384")
    return values


def _parse_numbers(value: str | None, names: str) -> tuple[int, ...] | None:
    """``"Y,X"``-style whole numbers, as many as ``names`` has letters separated by commas."""
    if value is None:
        return None
    count = names.count(",") + 1
    try:
        numbers = tuple(int(part) for part in value.split(","))
    except ValueError:
        numbers = ()
    if len(numbers) != count:
        raise click.BadParameter(f"{value!r} is not {names} ({count} whole numbers)")
    return numbers


def teaching_options(command):
    """What `explain` and `animate` share with `apply`: one kernel, how it is placed, how
    the image is read, and how the response becomes a pixel."""

    @click.argument("image_path", metavar="IMAGE", type=click.Path(path_type=Path))
    @click.option("--kernel", "-k", "kernel_value", required=True, metavar="NAME|PATH|MATRIX",
                  shell_complete=complete_kernel,
                  help="One kernel, as apply's --kernel takes it.")  # fmt: skip
    @normalize_option
    @scale_option
    @anchor_option
    @padding_options
    @flip_option
    @gray_option
    @no_auto_orient_option
    @rescale_option
    @bias_option
    @activation_option
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, **kwargs)

    return wrapper


class TeachingRun(NamedTuple):
    """What `explain` and `animate` read: the image as apply filters it, and the kernel."""

    image: object  # the ndarray as apply filters it
    channel_names: tuple[str, ...]
    kernel: object
    options: dict


def _teaching_run(image_path, kernel_value, normalize, scale, anchor, padding, cval, flip,
                  gray, no_auto_orient, rescale, bias, activation) -> TeachingRun:  # fmt: skip
    """Read the image and the kernel the way apply does (auto-orient, --gray)."""
    from convkit.explain import opencv_channel_names
    from convkit.imageio import read_image
    from convkit.pipeline import to_gray

    kernels = _kernels([kernel_value], [], normalize, scale)
    if len(kernels) != 1:
        names = ", ".join(k.name for k in kernels[:4]) + (", ..." if len(kernels) > 4 else "")
        raise UsageError(f"--kernel {kernel_value!r} names {len(kernels)} kernels ({names}): "
                         "give one")  # fmt: skip
    image = read_image(image_path, auto_orient=not no_auto_orient)
    if gray:
        image = to_gray(image)
    options = dict(padding=_padding(padding, cval), flip=flip, anchor=anchor, rescale=rescale,
                   bias=bias, activation=activation)  # fmt: skip
    return TeachingRun(image, opencv_channel_names(image), kernels[0], options)


@main.command()
@teaching_options
@click.option("--at", "at", required=True, metavar="Y,X",
              callback=lambda ctx, param, value: _parse_numbers(value, "Y,X"),
              help="The pixel (row Y, column X) under the kernel's anchor.")  # fmt: skip
@click.option("--png", "png_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also draw the explanation as a figure, PATH.png.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True,
              help="Print the record as JSON instead of text.")  # fmt: skip
def explain(at, png_path, as_json, **options):
    """Show how one output pixel is computed: the neighbourhood under the kernel (padding
    marked), the kernel as placed, the products, their sum, and each step down to the value
    apply writes there.

    Example: convkit explain sample_images/chelsea.png --kernel sharpen --at 0,0
    """
    import json

    from convkit.console import Screen
    from convkit.explain import explain as explain_pixel

    run = _teaching_run(**options)
    if png_path is not None:
        planned = _plan_teaching_output(png_path, options["image_path"], run.kernel, "figure")
        if png_path.suffix.lower() != ".png":
            given = str(png_path)
            raise UsageError(f"--png {given!r}: the figure is a PNG: give a path ending .png")
        png_path = planned
    record = explain_pixel(run.image, run.kernel, at, channel_names=run.channel_names,
                           image_name=str(options["image_path"]), **run.options)  # fmt: skip
    written = None
    if png_path is not None:  # first: an unwritable figure fails before anything is printed
        from convkit.imageio import encode_image, write_atomic

        written = write_atomic(png_path, encode_image(record.picture()))
    screen = Screen()
    if as_json:
        sys.stdout.write(json.dumps(record.to_dict()) + "\n")
    else:
        for line in record.lines():
            screen.line(line)
    if written is not None:
        (Screen(stdout=sys.stderr) if as_json else screen).line(f"wrote {written}")


@main.command()
@teaching_options
@click.option("--out", "-o", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="The animated GIF to write, e.g. slide.gif.")  # fmt: skip
@click.option("--crop", default=None, metavar="Y,X,H,W",
              callback=lambda ctx, param, value: _parse_numbers(value, "Y,X,H,W"),
              help="Animate this window of the image (row, column, height, width).")  # fmt: skip
@click.option("--fps", type=click.FloatRange(0.1, 50), default=2.0, show_default=True,
              help="Frames (output pixels) per second.")  # fmt: skip
def animate(out_path, crop, fps, **options):
    """Write an animated GIF of the kernel sliding across a small image (16x16 at most; use
    --crop on larger ones): the window on the padded input, the kernel's weights over it,
    the output filling in, the sum written out.

    Example: convkit animate sample_images/chelsea.png --kernel sharpen --crop 100,200,6,8
    --out slide.gif
    """
    from convkit.animate import crop as crop_image
    from convkit.animate import slide_frames, write_animation
    from convkit.console import Screen

    if out_path.suffix.lower() != ".gif":
        raise UsageError(f"--out {str(out_path)!r}: animate writes a GIF: give a path ending .gif")
    run = _teaching_run(**options)
    out_path = _plan_teaching_output(out_path, options["image_path"], run.kernel, "animation")
    image = run.image if crop is None else crop_image(run.image, crop)
    frames = slide_frames(image, run.kernel, channel_names=run.channel_names, **run.options)
    written = write_animation(frames, out_path, fps)
    Screen().line(f"wrote {written} ({len(frames)} frames)")


def _plan_teaching_output(path: Path, image_path: Path, kernel, what: str) -> Path:
    """``path``, checked against the image and the kernel file it must not replace."""
    from convkit.pipeline import kernel_sources
    from convkit.plan import OutputPlan

    return OutputPlan([image_path, *kernel_sources([kernel])]).claim(path, what)


@main.command()
@click.option(
    "--out",
    "-o",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="convkit-demo",
    show_default=True,
    help="Where the figures go.",
)
def demo(out_dir):
    """Reproduce the tutorials' worked examples: print the numbers, write the figures.

    Example: convkit demo --out convkit-demo
    """
    from convkit.console import Screen
    from convkit.demo import run_demo
    from convkit.imageio import write_atomic
    from convkit.plan import OutputPlan

    screen = Screen()
    sections = run_demo()
    plan = OutputPlan()  # every file's path checked before the first is written
    files = [[(plan.claim(out_dir / output.name, "figure"), output) for output in s.outputs()]
             for s in sections]  # fmt: skip
    for section, section_files in zip(sections, files, strict=True):
        screen.heading(section.title)
        for line in section.lines:
            screen.line(line)
        for path, output in section_files:
            screen.line(f"wrote {write_atomic(path, output.encode())}")
        screen.line("")


@main.command()
@click.argument("names", nargs=-1)
@click.option("--png", "png_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also draw each kernel as a heatmap, DIR/<name>.png.")  # fmt: skip
def kernels(names, png_dir):
    """List the kernel bank, or print the matrices of NAMES (bank names, parametric names,
    files or inline matrices).

    Example: convkit kernels sobel_x gaussian:5:1.4 --png kernels/
    """
    from convkit.console import Screen
    from convkit.kernel_files import resolve_kernels
    from convkit.kernels import BANK, PARAMETRIC_USAGE

    screen = Screen()
    if not names:
        if png_dir is not None:
            raise UsageError("--png draws the kernels you name: add NAMES (or 'all')")
        screen.kernel_list(list(BANK.values()), PARAMETRIC_USAGE)
        return
    kernels = resolve_kernels(list(names))
    pictures = _plan_kernel_pictures(kernels, png_dir) if png_dir is not None else None
    for i, kernel in enumerate(kernels):
        if i:
            screen.line("")
        screen.kernel_matrix(kernel)
        if pictures is not None:
            from convkit.compare import write_kernel_picture

            screen.line(f"wrote {write_kernel_picture(kernel, pictures[i])}")


def _plan_kernel_pictures(kernels, folder: Path) -> list[Path]:
    """``folder/<name>.png`` per kernel, checked against the kernel files read and each other."""
    from convkit.kernels import safe_name
    from convkit.pipeline import kernel_sources
    from convkit.plan import OutputPlan

    plan = OutputPlan(kernel_sources(kernels))
    return [plan.claim_name(folder, safe_name(k.name), [".png"])[0] for k in kernels]


def _stacks(texts) -> list:
    from convkit.kernel_files import resolve_kernel
    from convkit.stack import parse_stack

    return [parse_stack(text, lambda name: resolve_kernel(name, name)) for text in texts]


def _kernels(values, files, normalize: bool, scale: float | None, anchor=None, stacks_given=False):
    from convkit.kernel_files import resolve_kernels
    from convkit.kernels import BANK, adjust_kernels

    if not values and not files:
        if stacks_given:
            return []
        raise UsageError(
            "no kernel given: add --kernel NAME (one of " + ", ".join(BANK) + ", all), "
            "--kernel FILE, --kernel-file FILE or --stack STEPS"
        )
    return adjust_kernels(resolve_kernels(list(values), list(files)), normalize, scale, anchor)


def _padding(name: str, cval: float):
    from convkit.padding import make_padding

    return make_padding(name, cval)


def _backends(names) -> tuple[str, ...] | None:
    from convkit.backends import check_backend_name

    return tuple(check_backend_name(n) for n in names) or None
