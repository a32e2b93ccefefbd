"""Experiment tracking beyond the run directory: TensorBoard logs and MLflow runs."""

import importlib.util
import logging
from pathlib import Path

import keras

from cnnclf.config import flatten
from cnnclf.errors import ConfigError, first_line
from cnnclf.rundir.directory import RunDir


def check_tensorboard() -> None:
    """TensorFlow 2.21 no longer installs TensorBoard, which its summary writer needs."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard needs TensorBoard: pip install 'cnnclf[tensorboard]'")


def tensorboard(run: RunDir) -> keras.callbacks.TensorBoard:
    return keras.callbacks.TensorBoard(log_dir=str(run.path / "tensorboard"))


def connect_mlflow(settings):
    """The mlflow module, pointed at the configured store and experiment; a ConfigError if it
    is not installed or the store refuses (checked before the run directory exists)."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError("train.mlflow needs MLflow: pip install 'cnnclf[mlflow]'") from None
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not "creating experiment ..." on stderr
    try:
        mlflow.set_tracking_uri(settings.tracking_uri)
        if (
            settings.tracking_uri.startswith("sqlite:///")
            and mlflow.get_experiment_by_name(settings.experiment) is None
        ):
            # its artifacts beside the database, not in ./mlruns of wherever cnnclf happens to run
            folder = Path(settings.tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlruns"
            mlflow.create_experiment(settings.experiment, artifact_location=folder.as_uri())
        mlflow.set_experiment(settings.experiment)
    except mlflow.exceptions.MlflowException as e:
        raise ConfigError(
            f"train.mlflow.tracking_uri {settings.tracking_uri}: MLflow refused it: {first_line(e)}"
        ) from None
    return mlflow


class MlflowLogger(keras.callbacks.Callback):
    """One MLflow run per cnnclf run (a resumed run continues it): the flattened config as
    params, each epoch's values as metrics, then the test metrics, the run directory's files as
    artifacts, and the best model as an MLflow Model (the keras flavor, with its signature), which
    the registry, mlflow.pyfunc.load_model and `mlflow models serve` take."""

    def __init__(self, settings, run: RunDir, config):
        super().__init__()
        self.mlflow, self.run = connect_mlflow(settings), run
        previous = run.status().get("mlflow_run_id")
        self.active = self.mlflow.start_run(run_id=previous, run_name=run.path.name)
        if previous is None:
            self.mlflow.log_params({k: str(v)[:500] for k, v in flatten(config.model_dump(mode="json")).items()})
            run.set_status(run.status()["status"], mlflow_run_id=self.active.info.run_id)

    def on_epoch_end(self, epoch, logs=None):
        self.mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch + 1)

    def finish(self, metrics: dict, model: keras.Model) -> None:
        self.mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
        for path in sorted(self.run.path.iterdir()):
            if path.name in ("backup", "tensorboard", "model.keras", "run.lock"):
                continue
            if path.is_dir():
                self.mlflow.log_artifacts(str(path), artifact_path=path.name)
            else:
                self.mlflow.log_artifact(str(path))
        import mlflow.keras
        import numpy as np
        import tensorflow as tf
        from mlflow.models import infer_signature

        example = np.zeros((1, *model.input_shape[1:]), np.float32)  # 0-255 pixels of the run's shape
        logged = mlflow.keras.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example, verbose=0)),
            pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"],
        )
        self.run.set_status(self.run.status()["status"], mlflow_model_uri=logged.model_uri)

    def end(self, status: str) -> None:
        """status: FINISHED, FAILED or KILLED (interrupted)."""
        self.mlflow.end_run(status=status)
