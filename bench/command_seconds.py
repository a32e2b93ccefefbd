"""Where the seconds of one cnnclf command go (BENCHMARKS.md, "Where the seconds go"): the whole
process three times, spawn to exit, then once in this process under cProfile, printing the
cumulative seconds of cnnclf's functions, Keras's model loading and imports:

    python bench/command_seconds.py evaluate runs/<id>
    python bench/command_seconds.py predict runs/<id> digit.png
    python bench/command_seconds.py export runs/<id> --format onnx --out /tmp/m.onnx   # --out is removed before each run

For comparison, the platform's own floor: python -c "import tensorflow, keras".
"""

import cProfile
import io
import pstats
import shutil
import subprocess
import sys
import time


def main() -> None:
    args = sys.argv[1:]
    out = args[args.index("--out") + 1] if "--out" in args else None
    walls = []
    for _ in range(3):
        if out:
            shutil.rmtree(out, ignore_errors=True)
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "cnnclf", *args], capture_output=True, text=True)
        walls.append(round(time.time() - started, 2))
        if done.returncode != 0:
            sys.exit(done.stderr)
    print("whole process, seconds:", walls)
    if out:
        shutil.rmtree(out, ignore_errors=True)
    started = time.time()
    import cnnclf.cli

    profile = cProfile.Profile()
    profile.enable()
    cnnclf.cli.cli(args, prog_name="cnnclf", obj={"started": started}, standalone_mode=False)
    profile.disable()
    print("in this process, under cProfile, seconds:", round(time.time() - started, 2))
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(r"cnnclf|saving_lib|_find_and_load", 30)
    print("\n".join(line for line in text.getvalue().splitlines() if "cnnclf" in line or "load" in line))


if __name__ == "__main__":
    main()
