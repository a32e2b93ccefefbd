"""Fitting a compiled model phase by phase: training, then fine-tuning where train.fine_tune says.

One TrainingState (state.py) follows both phases: history.csv numbers epochs straight through and
names each one's phase; early stopping starts afresh in each phase, the best checkpoint carries
over; a run resumes in either phase, or between them.
"""

import numpy as np

from cnnclf.data.pipeline import errors_unwrapped, evaluation_batches, training_batches
from cnnclf.errors import DataError, listing
from cnnclf.training import distribute
from cnnclf.training.epoch_backup import TrainingState
from cnnclf.training.optimization import start_fine_tuning


def class_weights(setting, labels: np.ndarray, class_names: list[str]) -> dict[int, float] | None:
    """train.class_weight as Keras's fit takes it: {class index: weight}."""
    if setting == "none":
        return None
    if setting == "balanced":  # scikit-learn's rule: images / (classes x the class's images)
        counts = np.bincount(labels, minlength=len(class_names))
        return {i: float(len(labels) / (len(class_names) * n)) for i, n in enumerate(counts) if n}
    unknown = sorted(set(setting) - set(class_names))
    if unknown:
        raise DataError(
            f"train.class_weight: {listing(unknown)} {'is' if len(unknown) == 1 else 'are'} not a class "
            f"of the data ({listing(class_names)})"
        )
    return {i: float(setting.get(name, 1.0)) for i, name in enumerate(class_names)}


def fit_phases(session, state: TrainingState, callbacks: list, progress) -> None:
    """Fit what is left of each phase, restoring the saved state first."""
    config, splits, model, compute = session.config, session.data.splits, session.model, session.compute
    train, onehot = config.train, config.data.labels == "onehot"
    steps = compute.steps_per_epoch
    with session.strategy.scope():
        if state.phase == "fine_tune":  # the saved optimizer state is the fine-tuning optimizer's
            start_fine_tuning(model, config, steps, compute)
        state.restore_weights(model)
    for phase in ("train", "fine_tune") if train.fine_tune else ("train",):
        if phase == "train" and state.phase == "fine_tune":
            continue
        if phase == "fine_tune" and state.phase == "train":
            with session.strategy.scope():
                start_fine_tuning(model, config, steps, compute)
            state.begin_phase("fine_tune")
        if state.finished():
            continue
        end = train.epochs if phase == "train" else state.phase_start + train.fine_tune.epochs
        progress.epochs = end + (train.fine_tune.epochs if train.fine_tune and phase == "train" else 0)
        progress.phase = ("head" if phase == "train" else "fine-tuning") if train.fine_tune else ""
        progress.steps, progress.batch_size = steps, compute.batch_size
        batches = distribute.per_worker(
            session.strategy,
            lambda shard: training_batches(
                splits.train,
                compute.batch_size,
                config.seed,
                model.optimizer.iterations,
                splits.num_classes,
                onehot,
                first_epoch=state.phase_start,
                shard=shard,
                alternate_flips=config.data.augment.alternate_flips,
                mix=(config.data.augment.mixup, config.data.augment.cutmix),
                steps=steps,
            )[0],
        )
        validation = distribute.per_worker(
            session.strategy,
            lambda shard: evaluation_batches(
                splits.validation, compute.eval_batch_size, splits.num_classes, onehot, shard=shard
            ),
        )
        with errors_unwrapped():
            model.fit(
                batches,
                epochs=end,
                initial_epoch=state.first_epoch(),
                validation_data=validation,
                callbacks=callbacks,
                class_weight=session.class_weight,
                shuffle=False,
                verbose=0,
            )
