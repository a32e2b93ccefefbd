"""Tools around training runs.

tune.py          hyperparameter search with Optuna: each trial an ordinary run (study.py: the study)
lr_find.py       `cnnclf lr-find`: the learning-rate range test
label_issues.py  `cnnclf data issues`: the images most likely labelled wrong (cleanlab)
starter.py       `cnnclf init`: a commented starter config fitted to the data it finds
bench.py         `cnnclf bench`: configs trained in processes of their own, measured
bench_report.py  the benchmark's markdown; flops.py: the machine's peak and a model's FLOPs
"""
