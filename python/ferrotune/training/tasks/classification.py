"""Sequence classification and regression: one label per text (or pair), predicted by a head on the encoder
(transformers' ``AutoModelForSequenceClassification``, PEFT's ``SEQ_CLS``, which also trains and saves the head).
Regression is the same task with one output, number labels and a squared error."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ConfigError, LabelError
from ..metrics import compute_metrics
from .base import Task, column, first_row

CLASSIFICATION = "classification"
REGRESSION = "regression"


class Classification(Task):
    kind = CLASSIFICATION
    model_class = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"
    pipeline_tag = "text-classification"
    problem_type = "single_label_classification"

    # ---- Columns, rows and labels

    def columns(self, config: Any, preset: Any) -> dict[str, str]:
        label = config.label_column or (preset.label_column if preset else "label")
        return {**super().columns(config, preset), "label": label}

    def rows(self, table: Any, columns: dict[str, str], source: Any,
             label_names: list[str] | None) -> tuple[Any, list[str] | None]:  # fmt: skip
        import pyarrow as pa

        examples = self.texts(table, columns, source)
        name = columns["label"]
        examples["labels"], label_names = self.labels(column(table, name, "label", source), name, source, label_names)
        return pa.table(examples), label_names

    def labels(self, values: Any, name: str, source: Any,
               label_names: list[str] | None) -> tuple[Any, list[str] | None]:  # fmt: skip
        """Class ids (int64) from a column of ids or of label names; every label must be in the label set."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if values.null_count:
            raise LabelError(
                f"label column {name!r} is empty or missing in {source.where(first_row(pc.is_null(values)))} "
                f"({values.null_count} such example(s) in {source}): every example needs a label; add it or remove "
                "the example"
            )
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            strings = values.to_pylist()
            names = label_names if label_names is not None else sorted(set(strings))
            index = {label: i for i, label in enumerate(names)}
            unknown = sorted(set(strings) - set(index))
            if unknown:
                row = next(i for i, value in enumerate(strings) if value not in index)
                raise LabelError(
                    f"labels {unknown[:5]} in {source} are not in the label set {names} "
                    f"(the first, {strings[row]!r}, in {source.where(row)})"
                )
            return pa.array([index[v] for v in strings], pa.int64()), list(names)
        if not pa.types.is_integer(values.type):
            raise LabelError(
                f"classification labels (column {name!r} of {source}) must be ids or names, not {values.type}"
            )
        ids = values.cast(pa.int64())
        low, high = pc.min(ids).as_py(), pc.max(ids).as_py()
        names = label_names if label_names is not None else [str(i) for i in range(high + 1)]
        if low < 0 or high >= len(names):
            bad = low if low < 0 else high
            raise LabelError(
                f"label id {bad} in {source.where(first_row(pc.equal(ids, bad)))} is outside the label set {names} "
                f"(ids 0..{len(names) - 1})"
            )
        return ids.combine_chunks(), list(names)

    def check_labels(self, label_names: list[str] | None, train_path: Any) -> None:
        if len(label_names or []) < 2:
            raise LabelError(f"classification needs at least 2 labels; {train_path} has {label_names}")

    def num_labels(self, label_names: list[str] | None) -> int | None:
        return len(label_names or [])

    def default_metrics(self, label_names: list[str] | None) -> tuple[tuple[str, ...], str]:
        if len(label_names or []) == 2:
            return ("accuracy", "f1"), "accuracy"
        return ("accuracy",), "accuracy"

    # ---- Model

    def model_options(self, label_names: list[str] | None) -> dict[str, Any]:
        options: dict[str, Any] = {"num_labels": self.num_labels(label_names), "problem_type": self.problem_type}
        if label_names is not None:
            options["id2label"] = dict(enumerate(label_names))
            options["label2id"] = {name: i for i, name in enumerate(label_names)}
        return options

    # ---- Loss and metrics

    def loss(self, logits: Any, labels: Any) -> Any:
        import torch.nn.functional as F

        return F.cross_entropy(logits.float(), labels, reduction="sum")

    def metrics(self, names: tuple[str, ...], loss: float, outputs: np.ndarray | None, labels: np.ndarray | None,
                label_names: list[str] | None = None) -> dict[str, float]:  # fmt: skip
        assert outputs is not None and labels is not None
        return compute_metrics(names, outputs, labels)

    # ---- Prediction

    def predictions(self, outputs: np.ndarray, label_names: list[str] | None) -> list[dict[str, Any]]:
        """The most probable label and its probability (softmax of the logits)."""
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        names = label_names or []
        return [{"label": names[i], "score": float(p[i])} for i, p in zip(best, probabilities)]


class Regression(Classification):
    kind = REGRESSION
    problem_type = "regression"

    def check_config(self, config: Any) -> None:
        super().check_config(config)
        if config.label_names:
            raise ConfigError(f"label_names only apply to classification, not {self.kind}")

    def labels(self, values: Any, name: str, source: Any,
               label_names: list[str] | None) -> tuple[Any, list[str] | None]:  # fmt: skip
        """Scores (float32); every example needs one."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
            raise LabelError(f"regression labels in column {name!r} of {source} must be numbers")
        if values.null_count:
            raise LabelError(
                f"regression label {name!r} is empty or missing in "
                f"{source.where(first_row(pc.is_null(values)))}: every example needs a number"
            )
        return values.cast(pa.float32()), label_names

    def check_labels(self, label_names: list[str] | None, train_path: Any) -> None:
        return None  # scores: no label set

    def num_labels(self, label_names: list[str] | None) -> int | None:
        return 1

    def default_metrics(self, label_names: list[str] | None) -> tuple[tuple[str, ...], str]:
        return ("pearson", "spearman"), "pearson"

    def loss(self, logits: Any, labels: Any) -> Any:
        import torch.nn.functional as F

        return F.mse_loss(logits.float().squeeze(-1), labels.float(), reduction="sum")

    def predictions(self, outputs: np.ndarray, label_names: list[str] | None) -> list[dict[str, Any]]:
        return [{"label": "score", "score": float(row[0])} for row in outputs]
