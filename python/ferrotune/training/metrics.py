"""Evaluation metrics in NumPy (the GLUE ones) and entity scores of tag sequences (seqeval's): no scikit-learn, no
``evaluate`` (which needs the Hub), no seqeval."""

from __future__ import annotations

import math

import numpy as np

LOWER_IS_BETTER = frozenset({"loss", "perplexity"})


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def f1(predictions: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
    """Binary F1 of the positive class (GLUE MRPC's F1); 0 when there is no true positive."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    true_positive = np.sum((predictions == positive) & (labels == positive))
    predicted, actual = np.sum(predictions == positive), np.sum(labels == positive)
    if true_positive == 0:
        return 0.0
    precision, recall = true_positive / predicted, true_positive / actual
    return float(2 * precision * recall / (precision + recall))


def matthews_correlation(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation coefficient, multi-class form (Gorodkin 2004); 0 when undefined (as scikit-learn)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    classes = np.union1d(predictions, labels)
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, ([index[v] for v in labels], [index[v] for v in predictions]), 1)
    t, p = confusion.sum(axis=1), confusion.sum(axis=0)
    correct, samples = np.trace(confusion), confusion.sum()
    numerator = correct * samples - t @ p
    denominator = math.sqrt(samples**2 - p @ p) * math.sqrt(samples**2 - t @ t)
    return 0.0 if denominator == 0 else float(numerator / denominator)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    xc, yc = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(xc @ xc) * float(yc @ yc))
    return 0.0 if denominator == 0 else float(xc @ yc / denominator)


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (scipy.stats.rankdata's default)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Each run of equal values gets the mean of the positions it spans.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(rank(x), rank(y))


def compute_metrics(names: tuple[str, ...], outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The named metrics of model outputs: logits (classification, argmax taken here) or scores (regression)."""
    outputs = np.asarray(outputs)
    results = {}
    for name in names:
        if name in ("pearson", "spearman"):
            scores = outputs.reshape(-1)
            results[name] = pearson(scores, labels) if name == "pearson" else spearman(scores, labels)
            continue
        predictions = outputs.argmax(axis=-1)
        if name == "accuracy":
            results[name] = accuracy(predictions, labels)
        elif name == "f1":
            results[name] = f1(predictions, labels)
        elif name == "matthews_correlation":
            results[name] = matthews_correlation(predictions, labels)
        else:
            raise KeyError(f"unknown metric {name!r}")
    return results


# --------------------------------------------------------------------------------------------------
# Entities of tag sequences (NER): seqeval's default (lenient, conlleval-like) chunking of IOB2 / IOBES tags


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """An entity ended between the previous tag and this one (seqeval's ``end_of_chunk``)."""
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """An entity starts at this tag (seqeval's ``start_of_chunk``)."""
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def entities(tags: list[str], offset: int = 0) -> list[tuple[str, int, int]]:
    """``(type, first, last)`` of the entities of one tag sequence ("B-PER I-PER O" -> [("PER", 0, 1)]), as seqeval's
    ``get_entities``: an I- after O or after another type starts an entity, a change of type ends one."""
    found = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, label in enumerate([*tags, "O"]):
        tag, type_ = label[:1], label[1:].split("-", maxsplit=1)[-1] or "_"
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            found.append((prev_type, offset + begin, offset + i - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return found


def entity_scores(true: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Entity precision, recall and F1 (micro: an entity counts when its type and words match exactly) and token
    accuracy of tag sequences (one list of tags per sentence), as seqeval's ``precision_score``, ``recall_score``,
    ``f1_score`` and ``accuracy_score`` in their default mode; 0 where a ratio is undefined."""
    if len(true) != len(predicted) or any(len(t) != len(p) for t, p in zip(true, predicted)):
        raise ValueError("true and predicted tag sequences differ in number or length")
    true_entities, predicted_entities = set(), set()
    offset = correct_tokens = tokens = 0
    for true_tags, predicted_tags in zip(true, predicted):
        true_entities.update(entities(true_tags, offset))
        predicted_entities.update(entities(predicted_tags, offset))
        offset += len(true_tags) + 1  # sentences apart: an entity never runs from one into the next
        correct_tokens += sum(t == p for t, p in zip(true_tags, predicted_tags))
        tokens += len(true_tags)
    hits = len(true_entities & predicted_entities)
    precision = hits / len(predicted_entities) if predicted_entities else 0.0
    recall = hits / len(true_entities) if true_entities else 0.0
    denominator = precision + recall
    return {
        "precision": precision, "recall": recall, "f1": 2 * precision * recall / denominator if denominator else 0.0,
        "accuracy": correct_tokens / tokens if tokens else 0.0,
    }  # fmt: skip


def is_better(name: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if name in LOWER_IS_BETTER else value > best
