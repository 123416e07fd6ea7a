"""Names of the canned heads' predictions and metrics (tf.estimator's ``PredictionKeys`` / ``MetricKeys``).

The strings are TensorFlow's, so code written against tf.estimator's keys, the
TF-Serving REST answers and exported signatures read the same names.
"""

from __future__ import annotations

__all__ = ["MetricKeys", "PredictionKeys"]


class PredictionKeys:
    """Keys of the prediction dicts of the canned heads."""

    PREDICTIONS = "predictions"  # RegressionHead: the (inverse-linked) value
    LOGITS = "logits"
    LOGISTIC = "logistic"  # BinaryClassHead: sigmoid of the logit
    PROBABILITIES = "probabilities"
    CLASS_IDS = "class_ids"
    CLASSES = "classes"  # class names (label_vocabulary) or ids as text, added on the host
    ALL_CLASS_IDS = "all_class_ids"
    ALL_CLASSES = "all_classes"


class MetricKeys:
    """Keys of the evaluation metrics of the canned heads (besides ``loss``)."""

    LOSS = "loss"
    AVERAGE_LOSS = "average_loss"
    ACCURACY = "accuracy"
    ACCURACY_BASELINE = "accuracy_baseline"
    PRECISION = "precision"
    RECALL = "recall"
    AUC = "auc"
    AUC_PR = "auc_precision_recall"
    LABEL_MEAN = "label/mean"
    PREDICTION_MEAN = "prediction/mean"
