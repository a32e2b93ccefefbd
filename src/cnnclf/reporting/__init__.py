"""Looking at runs and data; reads run directories, never trainers.

plots.py       every plot, from a run directory's files alone (figures.py: matplotlib set up;
               image_grids.py: the pictures made of images)
report.py      report.html: one self-contained page
runs_table.py  `cnnclf runs`: a row per run
compare.py     config differences, metrics and curves of several runs
inspection.py  `cnnclf data inspect`: a dataset before training
tables.py      aligned text tables
"""
