"""The exceptions convkit raises; the command line turns them into one line and an exit code."""

EXIT_OK = 0
EXIT_RUN_ERROR = 1
EXIT_USAGE_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT; any signal N that stops a run exits 128 + N


class ConvkitError(Exception):
    """A run error: something that exists could not be processed (exit code 1)."""

    exit_code = EXIT_RUN_ERROR


class UsageError(ConvkitError):
    """The user asked for something that cannot be done as asked (exit code 2)."""

    exit_code = EXIT_USAGE_ERROR


class KernelError(UsageError):
    """An unknown kernel name, or a kernel with unusable weights."""


class KernelParseError(KernelError):
    """A kernel file or inline kernel string that cannot be parsed.

    The message names the source, the line and the offending token.
    """

    def __init__(self, source: str, line: int | None, message: str):
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line


class ImageReadError(ConvkitError):
    """A file that exists but cannot be decoded as an image."""


class ImageWriteError(ConvkitError):
    """An output that cannot be written."""


class Interrupted(KeyboardInterrupt):
    """A signal (SIGINT, SIGTERM, SIGHUP) asked the run to stop: exit code 128 + the signal.

    A `KeyboardInterrupt`, so that every ``except KeyboardInterrupt`` and ``finally`` that
    cleans up after Ctrl-C (temporary files, worker processes) does the same for the others.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum
