"""The run directory: one folder per run, everything it produced.

directory.py   RunDir: its files, status (run.json), lock, history, the kept epoch
provenance.py  env.json: versions, device and CPU class, command, commit, data fingerprints
"""
