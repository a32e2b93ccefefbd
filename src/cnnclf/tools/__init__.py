"""Tools around training runs.

tune.py          hyperparameter search with Optuna: each trial an ordinary run
starter.py       `cnnclf init`: a commented starter config fitted to the data it finds
bench.py         `cnnclf bench`: configs trained in processes of their own, measured
bench_report.py  the benchmark's markdown
"""
