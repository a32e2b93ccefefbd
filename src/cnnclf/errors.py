"""Domain errors. Library code raises these; only the CLI turns them into exit codes."""

import difflib


class CnnclfError(Exception):
    """A failure the user can act on. The message is one line: what, where, and the fix."""

    exit_code = 1


class ConfigError(CnnclfError):
    """The config (or a command-line override) is wrong."""

    exit_code = 2


class DataError(CnnclfError):
    """The data the config points at is missing or malformed."""

    exit_code = 2


class RunError(CnnclfError):
    """Something went wrong while running, or a run directory is not usable."""

    exit_code = 1


class NonFiniteLoss(RunError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, first_batch: int, batch: int, loss: float):
        batches = f"batch {batch}" if first_batch == batch else f"batches {first_batch}-{batch}"
        super().__init__(
            f"the loss became {loss} in epoch {epoch}, {batches}; lower "
            f"train.optimizer.learning_rate or check data.normalize"
        )
        self.epoch, self.batch = epoch, batch


class NonFiniteWeights(RunError):
    """A weight became NaN or infinite, whatever the loss says."""

    def __init__(self, epoch: int, weight: str):
        super().__init__(
            f"the weights became non-finite in epoch {epoch} ({weight}); lower "
            f"train.optimizer.learning_rate or check data.normalize"
        )
        self.epoch = epoch


class Pruned(RunError):
    """`cnnclf tune`'s pruner stopped a trial's run after an epoch: its value was not promising."""

    def __init__(self, epoch: int, metric: str, value: float):
        super().__init__(f"pruned after epoch {epoch}: {metric} {value:.4g} is not promising beside the other trials")
        self.epoch = epoch


class DiskFull(RunError):
    """A write failed for want of space; what was written before is kept."""

    def __init__(self, path, run=None):
        then = f", then `cnnclf resume {run}`" if run else ""
        super().__init__(f"disk full writing {path}; free some space{then}")
        self.path = path


class NotARunError(RunError):
    """A path given as a run directory is not one, or not a usable one (bad input, not a failure)."""

    exit_code = 2


class Interrupted(CnnclfError):
    """Training was stopped by SIGINT or SIGTERM; the run can be resumed."""

    def __init__(self, message, signal_number=2):
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


def closest(name: str, candidates) -> str | None:
    """The candidate most like `name` (difflib's ratio, at least 0.6), or None. `candidates` is names,
    or (name, what to return) pairs; on a tie the earlier one wins."""
    pairs = [c if isinstance(c, tuple) else (c, c) for c in candidates]
    scored = [(difflib.SequenceMatcher(None, name, n).ratio(), -i, value) for i, (n, value) in enumerate(pairs)]
    ratio, _, best = max(scored, default=(0.0, 0, None))
    return best if ratio >= 0.6 else None


def did_you_mean(name: str, valid) -> str:
    """'; did you mean 'x'?' for the closest valid name, or '' when none is close."""
    close = closest(str(name), list(valid))
    return f"; did you mean {close!r}?" if close is not None else ""


def listing(items, limit: int = 8) -> str:
    """Items for a message, at most `limit` of them: 'a, b, c and 12 more'. Whatever the data holds,
    an error stays one readable line."""
    items = [str(i) for i in items]
    shown = ", ".join(i if len(i) <= 80 else i[:77] + "..." for i in items[:limit])
    return f"{shown} and {len(items) - limit:,} more" if len(items) > limit else shown


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """'1 file', '2 files' ('1 class', '3 classes' with nouns given)."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def printable(text: object) -> str:
    """Text from outside (a file name, a path, a header) as it may be shown or logged: control
    characters such as CR and LF written as escapes, so that it cannot start a line of its own."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """An exception's message (or a text) cut to its first line, at most `limit` characters; an empty
    exception gives its class's name: what a one-line error may quote of an error from a library."""
    fallback = "" if isinstance(error, str) else error.__class__.__name__
    return (str(error).strip().splitlines() or [fallback])[0][:limit]
