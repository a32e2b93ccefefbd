"""Training: a config and its data -> a trained, evaluated run directory.

train.py         train(config) and resume(run): prepare, fit, evaluate, plot, record
compute.py       the compute levers with auto resolved for this machine (precision, steps)
optimization.py  compiling: optimizer, schedule, loss; the fine-tuning phase's compile
fitting.py       fitting phase by phase (training, then fine-tuning), class weights
callbacks.py     the epoch lines and progress bar, the NaN stop
epoch_backup.py  the state after each epoch, written whole (what resume continues from)
conv_gradients.py, distribute.py, tracking.py, memory.py: compute levers, tf.distribute,
                 TensorBoard and MLflow, the process's memory
"""
