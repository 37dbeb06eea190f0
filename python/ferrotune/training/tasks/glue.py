"""The GLUE presets (data, not code): which TSV columns hold the text and the label, the label names, the metrics."""

from __future__ import annotations

from dataclasses import dataclass

from .classification import CLASSIFICATION, REGRESSION


@dataclass(frozen=True)
class GlueTask:
    name: str
    folder: str  # the folder name in GLUE's release (for error messages)
    kind: str
    text_column: str
    text_pair_column: str | None
    label_column: str
    label_names: tuple[str, ...] | None  # None for regression
    metrics: tuple[str, ...]
    main_metric: str  # the one best-checkpoint tracking maximises
    column_names: tuple[str, ...] | None = None  # the header, for files released without one
    train_file: str = "train.tsv"
    eval_file: str = "dev.tsv"


GLUE_TASKS = {
    "mrpc": GlueTask(
        "mrpc", "MRPC", CLASSIFICATION, "#1 String", "#2 String", "Quality",
        ("not_equivalent", "equivalent"), ("accuracy", "f1"), "f1",
    ),
    "sst2": GlueTask(
        "sst2", "SST-2", CLASSIFICATION, "sentence", None, "label", ("negative", "positive"), ("accuracy",), "accuracy"
    ),
    "cola": GlueTask(
        "cola", "CoLA", CLASSIFICATION, "sentence", None, "label", ("unacceptable", "acceptable"),
        ("matthews_correlation",), "matthews_correlation", column_names=("source", "label", "mark", "sentence"),
    ),
    "stsb": GlueTask(
        "stsb", "STS-B", REGRESSION, "sentence1", "sentence2", "score", None, ("pearson", "spearman"), "pearson"
    ),
}  # fmt: skip
