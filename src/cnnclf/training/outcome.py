"""How a run ends, recorded in its directory: the status a failure or an interruption leaves and the
line that says how training stopped; and the training images the data plot shows."""

import contextlib
import io
import logging
import signal

import numpy as np

from cnnclf.atomic import is_disk_full, write_bytes
from cnnclf.data.dataset import Dataset
from cnnclf.data.images import first_of_each_class
from cnnclf.errors import CnnclfError, DiskFull, Interrupted, Pruned, plural
from cnnclf.rundir.directory import RunDir, kept_epoch
from cnnclf.signals import interrupts_raised

log = logging.getLogger("cnnclf")


def write_data_samples(run: RunDir, data: Dataset) -> None:
    """A few training images of each class, for the "look at your data" plot."""
    train = data.splits.train
    chosen = first_of_each_class(train.labels, data.splits.num_classes)
    out = io.BytesIO()
    np.savez_compressed(
        out, images=train.gather(chosen), labels=train.labels[chosen], class_names=np.array(data.splits.class_names)
    )
    write_bytes(run.data_samples, out.getvalue())


def how_it_ended(run: RunDir, train_cfg, early_stopping, epochs_done: int) -> str:
    """Why training stopped where it did, and which epoch's model is kept, in one line."""
    rows = run.read_history()
    kept = kept_epoch(run, rows)
    checkpoint = train_cfg.checkpoint
    if checkpoint is not None and rows and checkpoint.monitor in rows[0]:
        value = next(r[checkpoint.monitor] for r in rows if r["epoch"] == kept)
        why = f"kept epoch {kept} (best {checkpoint.monitor}, {value:.4g})"
    else:
        why = f"kept epoch {kept}, the last"
    if early_stopping is not None and early_stopping.stopped_epoch > 0:
        return (
            f"early stopping: no improvement in {early_stopping.monitor} for {early_stopping.patience} epochs "
            f"after epoch {early_stopping.best_epoch + 1}; {why}"
        )
    return f"trained {'its one epoch' if epochs_done == 1 else f'all {epochs_done} epochs'}; {why}"


@contextlib.contextmanager
def outcome_recorded(run: RunDir, epochs_done):
    """Ctrl-C or SIGTERM marks the run interrupted, any other failure marks it failed; both re-raise.
    A full disk may refuse even the status: the run then stays resumable, and `cnnclf runs` sees
    that no process holds it. `epochs_done()`: the epochs finished, when it happens."""
    try:
        with interrupts_raised():
            yield
    except (Interrupted, KeyboardInterrupt) as e:
        epochs = epochs_done()
        with contextlib.suppress(DiskFull):
            run.set_status("interrupted", epochs_done=epochs)
        signal_number = e.signal_number if isinstance(e, Interrupted) else signal.SIGINT
        raise Interrupted(
            f"{e or 'stopped by SIGINT'} after {plural(epochs, 'finished epoch')}; continue with: "
            f"cnnclf resume {run.path}",
            signal_number,
        ) from None
    except Pruned:
        with contextlib.suppress(DiskFull):
            run.set_status("pruned", epochs_done=epochs_done())
        raise
    except Exception as e:
        if is_disk_full(e) and not isinstance(e, DiskFull):
            e = DiskFull(getattr(e, "filename", None) or run.path)
        message = str(e) if isinstance(e, CnnclfError) else f"{e.__class__.__name__}: {e}"
        with contextlib.suppress(DiskFull):
            run.set_status("failed", epochs_done=epochs_done(), error=message)
        if isinstance(e, DiskFull):
            raise DiskFull(e.path, run.path) from None
        if isinstance(e, CnnclfError):
            e.args = (f"{message} (run {run.path} is marked failed)",)
        raise
