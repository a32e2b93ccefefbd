"""train.time_budget: as many epochs as fit the budget on this machine, with the schedule fitted to them.

Before the run's model is built, a throwaway copy of it (the same config, compiled the same way)
trains a few steps and validates a few batches on the run's own data: the first execution of each
traces its function and is not counted, the next ones are timed, two of each of different lengths:
their difference gives a step's seconds, the rest the seconds each pass over the data takes to
start. From these an epoch's seconds follow (training, validation, their starts and the epoch's
save), and the epochs are what fits in the
budget's share (SAFETY of it: a CPU's speed moves between minutes) less the tracing the run's first
epoch pays again. Where whole epochs would leave more of it unused than LEFT_UNUSED (one epoch of
Fashion-MNIST takes 117 s on the AMD EPYC: a 4-minute budget held one), there is one epoch more and
each is shorter (train.steps_per_epoch: each epoch the first steps of its own order); a budget
shorter than one epoch gets one short epoch. The run is then built with those
epochs, so the warm-up, the cosine decay and lookahead end where the run does, never cut off. The
decision is printed and kept in run.json; resume keeps the epochs config.yaml holds. The budget
covers fitting; the start, evaluation and the plots come on top (run.json times each).
"""

import logging
import time

import numpy as np

from cnnclf.config import Config, override

log = logging.getLogger("cnnclf")

SAFETY = 0.93  # of the budget, what the planned epochs may fill
TIMED_SECONDS = 2.0  # about this much training is timed in one call, after the first (which traces)
MAX_TIMED_STEPS = 200
MIN_FRACTION = 0.05  # of an epoch, the least a budget plans
# of the budget, the most whole epochs may leave unused beyond SAFETY's share (so that training ends
# within a tenth of the budget); beyond, one more epoch is planned and each made shorter: at 0.1 of the
# usable seconds, one 100 s epoch of Fashion-MNIST filled 98 s of a 2-minute budget on the AMD EPYC
LEFT_UNUSED = 0.03


def plan(config: Config, data, build, compute, measured=None) -> tuple[Config, dict]:
    """The config with the epochs that fit train.time_budget, and the decision. `build(config)`: a
    compiled model of the config (the run's own builder); `measured`: the speeds (training, validation
    images/s, the seconds the first execution takes to trace, each epoch's fixed seconds), when a test
    injects them instead of measuring."""
    budget = config.train.time_budget
    assert budget is not None
    started = time.perf_counter()
    train_rate, validation_rate, tracing, per_epoch = measured or _measure(config, data, build, compute)
    splits = data.splits
    training = len(splits.train) / train_rate
    validating = len(splits.validation) / validation_rate + per_epoch  # each epoch's, whatever its length
    epoch, usable = training + validating, SAFETY * budget - tracing
    epochs = max(1, min(100_000, int(usable / epoch)))
    if usable - epochs * epoch > LEFT_UNUSED * budget:  # whole epochs would end early: one more, each shorter
        epochs += 1
    # each epoch's share of the training images that fits (its validation whole), at most all of them
    fraction = min(max((usable / epochs - validating) / training, MIN_FRACTION), 1.0)
    steps = max(1, int(fraction * compute.steps_per_epoch))
    changes = {"train.epochs": epochs, "train.steps_per_epoch": steps if fraction < 1.0 else None}
    decision = {
        "budget_seconds": budget,
        "train_images_per_second": round(train_rate, 1),
        "validation_images_per_second": round(validation_rate, 1),
        "epoch_seconds": round(epoch, 2),
        "tracing_seconds": round(tracing, 2),
        "per_epoch_seconds": round(per_epoch, 2),
        "epochs": epochs,
        "steps_per_epoch": changes["train.steps_per_epoch"],
        "measuring_seconds": round(time.perf_counter() - started, 2),
    }
    planned = (
        f"{epochs} epochs"
        if fraction == 1.0
        else f"{epochs} epoch{'s' if epochs > 1 else ''} of {fraction:.0%} of the training images ({steps} steps each)"
    )
    log.info(
        f"time budget {budget:g} s: {train_rate:,.0f} images/s training and {validation_rate:,.0f} validating on "
        f"this machine, {epoch:.1f} s an epoch: {planned}, the schedule fitted to them"
    )
    return override(config, changes), decision


def _measure(config: Config, data, build, compute) -> tuple[float, float, float, float]:
    """Training and validation images per second of a throwaway copy of the model, timed after their
    first call (which traces); the seconds that tracing took beyond the step, which the run's first
    epoch pays again; and each epoch's fixed seconds: starting its passes over the training and the
    validation data, and saving at its end (the state resume continues from, and the kept model)."""
    import tempfile
    from pathlib import Path

    from cnnclf.data.pipeline import evaluation_batches, training_batches
    from cnnclf.model.build import eval_batch_size

    splits, onehot = data.splits, config.data.labels == "onehot"
    model = build(config)
    batches, steps = training_batches(
        splits.train, compute.batch_size, config.seed, model.optimizer.iterations, splits.num_classes, onehot
    )
    started = time.perf_counter()
    model.fit(batches.take(1), epochs=1, shuffle=False, verbose=0)  # traces, then one step
    first = time.perf_counter() - started
    # one step at a time (an execution of the run's is up to 32 steps: 80 s of CIFAR-10's on the AMD
    # EPYC), more in each call until a call is long enough to time; each call starts a pass over the
    # data (as each epoch does), so a step's time is the difference of the last two calls, over their
    # difference in steps: timed whole, the start counted as steps made the speed 10-27% too slow
    calls = [(0, 0.0)]
    while len(calls) < 3 or (calls[-1][1] < TIMED_SECONDS / 2 and calls[-1][0] < min(steps, MAX_TIMED_STEPS)):
        timed, seconds = calls[-1]
        timed = min(steps, MAX_TIMED_STEPS, max(2 * timed, int(timed * TIMED_SECONDS / max(seconds, 1e-3)), 1))
        started = time.perf_counter()
        model.fit(batches.repeat().take(timed), epochs=1, shuffle=False, verbose=0)
        calls.append((timed, time.perf_counter() - started))
    step, start = _per_item(calls)
    validation = splits.validation if len(splits.validation) else splits.test
    eval_size = eval_batch_size(model, config.train)
    eval_batches = evaluation_batches(validation, eval_size, splits.num_classes, onehot)
    started = time.perf_counter()
    model.evaluate(eval_batches.take(1), verbose=0)  # traces, then one batch
    first_evaluation = time.perf_counter() - started
    evaluations = [(0, 0.0)]
    for batches_timed in (1, 3):  # images, not batches: a small validation split has fewer than 3
        started = time.perf_counter()
        model.evaluate(eval_batches.take(batches_timed), verbose=0)
        evaluations.append((min(batches_timed * eval_size, len(validation)), time.perf_counter() - started))
    image, evaluation_start = _per_item(evaluations)
    batch = image * min(eval_size, len(validation))
    tracing = max(first - step - start, 0.0) + max(first_evaluation - batch - evaluation_start, 0.0)
    with tempfile.TemporaryDirectory() as folder:  # what an epoch's end writes: about the model, twice
        started = time.perf_counter()
        model.save(Path(folder) / "model.keras")
        saving = 2 * (time.perf_counter() - started)
    del model
    train_rate, validation_rate = compute.batch_size / step, 1 / image
    return float(train_rate), float(np.clip(validation_rate, 1.0, None)), tracing, start + evaluation_start + saving


def _per_item(calls: list[tuple[int, float]]) -> tuple[float, float]:
    """From calls of (items, seconds), the seconds an item takes (the last two calls' difference) and
    those a call takes to start, whatever its length."""
    (before, earlier), (items, seconds) = calls[-2], calls[-1]
    each = (seconds - earlier) / (items - before) if seconds > earlier and items > before else seconds / items
    return max(each, 1e-6), max(seconds - items * each, 0.0)
