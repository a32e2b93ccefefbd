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
        super().__init__(f"the loss became {loss} in epoch {epoch}, {batches}; lower "
                         f"train.optimizer.learning_rate or check data.normalize")
        self.epoch, self.batch = epoch, batch


class NotARunError(RunError):
    """A path given as a run directory is not one (bad usage, not a failure)."""

    exit_code = 2


class Interrupted(CnnclfError):
    """Training was stopped by SIGINT or SIGTERM; the run can be resumed."""

    def __init__(self, message, signal_number=2):
        super().__init__(message)
        self.exit_code = 128 + signal_number


def did_you_mean(name: str, valid) -> str:
    """'; did you mean 'x'?' for the closest valid name, or '' when none is close."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
