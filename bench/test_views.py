"""What each test-time view adds (BENCHMARKS.md, "CIFAR-10: an airbench-class recipe"): a finished run's
kept model evaluated on its test set with each combination of data.augment.test_flip and test_shift,
in the precision `cnnclf evaluate` uses on this CPU:

    python bench/test_views.py bench/runs/20261205T211135Z-cifar10
"""

import argparse

from cnnclf import startup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished run directory whose config translates (for shifts)")
    args = parser.parse_args()
    startup.start()
    import numpy as np

    from cnnclf.data.dataset import load
    from cnnclf.inference.loading import inference_model, load_model
    from cnnclf.rundir.directory import RunDir

    run = RunDir(args.run)
    config = run.read_config()
    test = load(config.data, config.seed, saved_split=run.saved_split(), need=("test",)).splits.test
    x, y = test.gather(np.arange(len(test))).astype("float32"), test.labels
    model = load_model(run, as_trained=True)
    shift = config.data.augment.test_shift or 1
    print("| test-time views | test accuracy |\n|---|--:|")
    for flip, shifted in ((False, 0), (True, 0), (False, shift), (True, shift)):
        augment = config.data.augment.model_copy(update={"test_flip": flip, "test_shift": shifted})
        views = inference_model(
            model, config.model_copy(update={"data": config.data.model_copy(update={"augment": augment})})
        )
        scores = np.concatenate([views.predict_on_batch(x[i : i + 1000]) for i in range(0, len(x), 1000)])
        print(f"| test_flip {flip}, test_shift {shifted} | {np.mean(scores.argmax(1) == y):.2%} |", flush=True)


if __name__ == "__main__":
    main()
