"""Training: a config and its data -> a fitted run directory (pipeline.py evaluates, records and
draws it; nothing here imports inference or reporting).

train.py         train(config) and resume(run): build the model, fit it epoch by epoch
compute.py       the compute levers with auto resolved for this machine (precision, steps)
budget.py        train.time_budget: the epochs that fit, from the speed measured here
optimization.py  compiling: optimizer, schedule, loss; the fine-tuning phase's compile
fitting.py       fitting phase by phase (training, then fine-tuning), class weights
callbacks.py     the epoch lines and progress bar, the NaN stop
epoch_backup.py  the state after each epoch, written whole (what resume continues from)
outcome.py       how a run ends: the status a failure leaves, the line that says why it stopped
conv_gradients.py, distribute.py, tracking.py, memory.py: compute levers, tf.distribute,
                 TensorBoard and MLflow, the process's memory
"""
