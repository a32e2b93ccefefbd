"""measures.py, against exact oracles worked by hand (a measure set to a constant fails here), and
the calibration fitted from them (inference/calibration.py). No TensorFlow."""

import numpy as np
import pytest

from cnnclf import measures

# 6 images of 3 classes; image 4 (class 1) is taken for class 2, image 5 (class 2) for class 0
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
PROBABILITIES = np.array([
    [0.90, 0.05, 0.05],
    [0.60, 0.30, 0.10],
    [0.20, 0.70, 0.10],
    [0.10, 0.35, 0.55],
    [0.05, 0.05, 0.90],
    [0.50, 0.10, 0.40],
])


def test_the_confusion_matrix_and_per_class_scores():
    counts = measures.confusion_matrix(Y_TRUE, PROBABILITIES.argmax(1), 3)
    assert counts.tolist() == [[2, 0, 0], [0, 1, 1], [1, 0, 1]]
    scores = measures.per_class(counts)
    np.testing.assert_allclose(scores["precision"], [2 / 3, 1, 1 / 2])
    np.testing.assert_allclose(scores["recall"], [1, 1 / 2, 1 / 2])
    np.testing.assert_allclose(scores["f1"], [0.8, 2 / 3, 1 / 2])
    assert scores["support"].tolist() == [2, 2, 2]


def test_top_k_accuracy():
    assert measures.top_k_accuracy(PROBABILITIES, Y_TRUE, 1) == pytest.approx(4 / 6)
    assert measures.top_k_accuracy(PROBABILITIES, Y_TRUE, 2) == pytest.approx(6 / 6)  # 0.35 and 0.40 second


def test_the_calibration_bins_and_error():
    """Top probabilities 0.9, 0.6, 0.7, 0.55, 0.9, 0.5 in 15 bins of 1/15: image by image, |accuracy -
    confidence| weighted by the bin's count: (0.9 + 0.9 from two right: 0.1 each... worked below)."""
    bins = [b for b in measures.calibration_bins(PROBABILITIES, Y_TRUE) if b["count"]]
    assert [b["count"] for b in bins] == [1, 1, 1, 1, 2]  # 0.5, 0.55, 0.6, 0.7, 0.9 x2
    assert [b["accuracy"] for b in bins] == [0.0, 0.0, 1.0, 1.0, 1.0]
    # |0 - 0.5| + |0 - 0.55| + |1 - 0.6| + |1 - 0.7| + 2 |1 - 0.9|, over 6 images
    assert measures.expected_calibration_error(PROBABILITIES, Y_TRUE) == pytest.approx(
        (0.5 + 0.55 + 0.4 + 0.3 + 0.2) / 6)


def test_a_temperature_keeps_the_classes_and_calibrates_an_overconfident_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 2000)
    logits = rng.normal(0, 1, (2000, 4))
    logits[np.arange(2000), labels] += 1.0  # right a little more often than not...
    overconfident = np.exp(4 * logits) / np.exp(4 * logits).sum(1, keepdims=True)  # ...but sure of itself
    temperature = measures.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(4.0, rel=0.15)  # it undoes the factor of 4
    fixed = measures.calibrated(overconfident, temperature)
    assert (fixed.argmax(1) == overconfident.argmax(1)).all()
    assert measures.expected_calibration_error(fixed, labels) < measures.expected_calibration_error(
        overconfident, labels) / 3
    np.testing.assert_allclose(measures.calibrated(overconfident, 1.0), overconfident, atol=1e-9)


def test_the_threshold_keeps_its_share():
    scores = np.arange(1, 101) / 100  # 0.01 .. 1.00
    threshold = measures.keeping(scores, 0.95)
    assert np.mean(scores >= threshold) == pytest.approx(0.95, abs=0.011) and threshold == pytest.approx(0.06)


def test_calibration_flags_what_it_does_not_know():
    from cnnclf.inference import calibration

    fitted = calibration.fit(PROBABILITIES, Y_TRUE)
    assert fitted["score"] == "top probability" and fitted["kept"] == 0.95
    right = measures.calibrated(PROBABILITIES, fitted["temperature"])
    assert fitted["threshold"] == pytest.approx(right.max(1)[right.argmax(1) == Y_TRUE].min())  # 4 right: the least
    assert calibration.unknown(right, fitted["threshold"]).tolist() == [
        p < fitted["threshold"] for p in right.max(1)]
    without = calibration.fit(PROBABILITIES[:0], Y_TRUE[:0])
    assert (without["temperature"], without["threshold"]) == (1.0, 0.0) and "validation" in without["why"]


def test_precision_recall_and_average_precision_are_scikit_learns():
    from sklearn.metrics import average_precision_score

    for c in range(3):
        precision, recall, average = measures.precision_recall_curve(PROBABILITIES[:, c], Y_TRUE == c)
        assert average == pytest.approx(average_precision_score(Y_TRUE == c, PROBABILITIES[:, c]))
        assert recall[0] == 0 and recall[-1] == 1 and precision[0] == 1
    # class 1 ranked by its probability: 0.70 (a 1), 0.35 (a 1), 0.30, 0.10, ...: both found at once
    assert measures.precision_recall_curve(PROBABILITIES[:, 1], Y_TRUE == 1)[2] == pytest.approx(1.0)


def test_the_most_confused_pairs_come_largest_first():
    counts = np.array([[8, 1, 0], [5, 3, 2], [0, 2, 9]])
    assert measures.most_confused(counts, ["cat", "dog", "fox"], limit=3) == [
        {"given": "dog", "predicted": "cat", "images": 5, "share": 0.5},
        {"given": "dog", "predicted": "fox", "images": 2, "share": 0.2},
        {"given": "fox", "predicted": "dog", "images": 2, "share": 2 / 11},
    ]
