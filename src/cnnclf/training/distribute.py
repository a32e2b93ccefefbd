"""train.distribute: a tf.distribute strategy for the run, and who writes the run directory.

none          the default strategy (one device)
mirrored      MirroredStrategy over this machine's GPUs (or train.cpu_replicas logical CPUs)
multi_worker  MultiWorkerMirroredStrategy over the cluster in TF_CONFIG; every worker runs
              the same command, the chief writes the run directory
auto          mirrored when more than one GPU is visible, else none
"""

import functools
import json
import os

import tensorflow as tf

from cnnclf import compat
from cnnclf.errors import ConfigError


@functools.cache
def strategy(mode: str) -> tf.distribute.Strategy:
    """The process's strategy (created once: MultiWorkerMirroredStrategy may not be made twice)."""
    if mode == "auto":
        mode = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "none"
    if mode == "none":
        return tf.distribute.get_strategy()
    if mode == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy([d.name for d in gpus or tf.config.list_logical_devices("CPU")])
    _check_tf_config()
    compat.multi_worker_fixes()
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_distributed(chosen: tf.distribute.Strategy) -> bool:
    return chosen is not tf.distribute.get_strategy() or chosen.num_replicas_in_sync > 1


def is_multi_worker(chosen: tf.distribute.Strategy) -> bool:
    return isinstance(chosen, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(chosen: tf.distribute.Strategy) -> bool:
    """True for the process that writes the run directory: the only one, or TF_CONFIG's chief
    (worker 0 when the cluster has no chief)."""
    if not is_multi_worker(chosen):
        return True
    resolver = chosen.cluster_resolver
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def per_worker(chosen: tf.distribute.Strategy, make):
    """The batches `make(shard)` builds, as the strategy feeds them: under multi_worker each worker
    builds its own pipeline for its slice of every batch (shard = (this worker, workers)), so it reads
    and decodes only its own images; otherwise the one pipeline, whose batches the strategy splits
    across this process's replicas."""
    if not is_multi_worker(chosen):
        return make((0, 1))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF  # sliced already
    return chosen.distribute_datasets_from_function(
        lambda context: make((context.input_pipeline_id, context.num_input_pipelines)).with_options(options)
    )


def fit_model(model, chosen: tf.distribute.Strategy):
    """The model as fit takes it under the strategy (compat.peek_one_replica for multi_worker)."""
    if is_multi_worker(chosen):
        compat.peek_one_replica(model, chosen)
    return model


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ConfigError(
            "train.distribute: multi_worker needs the TF_CONFIG environment variable (the cluster "
            "and this worker's task); see README, Distributed training"
        )
    try:
        tf_config = json.loads(text)
        tf_config["cluster"], tf_config["task"]["type"], tf_config["task"]["index"]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"TF_CONFIG: not a cluster description ({e.__class__.__name__}: {e}); expected "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        ) from None
