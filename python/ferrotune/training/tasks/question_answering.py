"""Extractive question answering (SQuAD): the answer is a span of the context, predicted by a head giving each token
a start and an end logit (``AutoModelForQuestionAnswering``, PEFT's ``QUESTION_ANS``), as the Hugging Face course's
chapter 7 section 7.

Data: SQuAD JSON files (``--format squad``, or a ``.json`` file that starts as SQuAD's: ``{"data": [{"title",
"paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}``) read into one
row per question, or JSONL / Parquet / Arrow rows with the columns of the Hugging Face ``squad`` dataset: ``id``,
``context``, ``question`` and ``answers`` (``{"text": [...], "answer_start": [...]}``; a list of ``{"text",
"answer_start"}`` objects is accepted too). Every answer must be where it says it is (``context[answer_start:
answer_start + len(text)] == text``) and every question needs one (SQuAD v2's unanswerable questions are refused):
errors name the file and the question id.

Preprocessing is the course's ``preprocess_training_examples`` / ``preprocess_validation_examples``: the stripped
question and the context are tokenized as a pair, only the context truncated, in windows of ``--max-length`` tokens
(384 by default) overlapping by ``--doc-stride`` (128); each window (a *feature*) is labelled with the token positions
of the first answer's start and end, or (0, 0), the [CLS] token, when the answer is not wholly inside the window (the
course's rule: a window that cuts the answer teaches "no answer here"). Windows are padded per batch, not to
``max_length`` (the same tokens, less padding). The loss is that of transformers' ``BertForQuestionAnswering``: the
mean of the start and end cross-entropies, per window.

Evaluation: the metrics need all the windows of a question together, and the evaluation loop (``loop.evaluate``)
hands :meth:`QuestionAnswering.metrics` one output row per encoded row (here a window), in the order :meth:`encode`
built them. So :meth:`encode` keeps what the metrics need beyond the logits (:class:`Evaluation`: each window's
question and context offsets, each question's context and gold answers, ``--n-best`` and ``--max-answer-length``)
and each window's labels carry its row number, which :meth:`metrics` checks against what it kept before running the
course's post-processing (:func:`best_answers`: the best-scoring valid span over all the windows of a question) and
SQuAD v1.1's official exact match and F1 (:func:`squad_scores`, in percent as the official script and
``evaluate.load("squad")`` report them). The kept :class:`Evaluation` is the task object's state: one evaluation set
per process at a time (``ferrotune.train`` encodes it once, before the loop; every process of a multi-process run
encodes the whole set and gathers every window's outputs). The logits are trimmed to each window's own length before
the n-best search (the course pads every window to ``max_length`` and lets padding take n-best places it can never
win; here windows are padded per batch). :func:`best_answers` takes plain arrays, for ``ferrotune.predict`` to reuse.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError, InvalidArgumentError, TokenizationError
from .base import MODEL_INPUTS, Task, column, text_column
from .token_classification import SentenceBatches, rows_of

QUESTION_ANSWERING = "question-answering"
QA_COLUMNS = ("id", "context", "question", "answers")


@dataclass
class Evaluation:
    """What the metrics need of an encoded evaluation set besides the model's outputs."""

    feature_examples: np.ndarray  # each window's question (row of the examples)
    offsets: list[list[tuple[int, int] | None]]  # each window's character spans, None outside the context
    contexts: list[str]
    answers: list[list[str]]  # each question's gold answers
    n_best: int
    max_answer_length: int


class QuestionAnswering(Task):
    kind = QUESTION_ANSWERING
    model_class = "AutoModelForQuestionAnswering"
    peft_task_type = "QUESTION_ANS"
    pipeline_tag = "question-answering"
    label_column = None
    default_max_length = 384

    def __init__(self) -> None:
        self.evaluation: Evaluation | None = None  # of the last table given to encode()

    def check_config(self, config: Any) -> None:
        super().check_config(config)
        for name in ("text_column", "text_pair_column", "label_column", "label_names"):
            if getattr(config, name):
                raise ConfigError(
                    f"{name} does not apply to question-answering: it reads the columns {', '.join(QA_COLUMNS)} "
                    "(SQuAD's)"
                )
        if config.doc_stride >= config.max_length:
            raise ConfigError(f"doc_stride ({config.doc_stride}) must be smaller than max_length ({config.max_length})")

    # ---- Columns, rows and labels

    def columns(self, config: Any, preset: Any) -> dict[str, str]:
        return {name: name for name in QA_COLUMNS}

    def rows(self, table: Any, columns: dict[str, str], source: Any,
             label_names: list[str] | None) -> tuple[Any, list[str] | None]:  # fmt: skip
        """``id``, ``context``, ``question`` and ``answers`` (``{"text": [...], "answer_start": [...]}``), every
        answer checked against its context."""
        import pyarrow as pa

        texts = {name: text_column(table, name, name, source) for name in ("id", "context", "question")}
        ids, contexts = texts["id"].to_pylist(), texts["context"].to_pylist()
        answers = answer_lists(column(table, "answers", "answers", source), source, ids)
        for row, (qid, context, (texts_, starts)) in enumerate(zip(ids, contexts, answers)):
            where = f"{source.where(row)} (question id {qid!r})"
            if not texts_:
                raise DataError(
                    f"{where} has no answer: extractive question answering needs one per question (SQuAD v2's "
                    "unanswerable questions are not supported); remove the question"
                )
            for text, start in zip(texts_, starts):
                if not text:
                    raise DataError(f"{where}: an answer is empty")
                if start < 0 or start + len(text) > len(context):
                    raise DataError(
                        f"{where}: answer {text!r} starts at character {start}, outside its context "
                        f"({len(context)} characters)"
                    )
                if context[start : start + len(text)] != text:
                    raise DataError(
                        f"{where}: answer {text!r} is not at answer_start {start} of the context, which reads "
                        f"{context[start : start + len(text)]!r} there"
                    )
        struct = pa.struct([("text", pa.list_(pa.string())), ("answer_start", pa.list_(pa.int64()))])
        values = [{"text": t, "answer_start": s} for t, s in answers]
        return pa.table({**texts, "answers": pa.array(values, struct)}), None

    def default_metrics(self, label_names: list[str] | None) -> tuple[tuple[str, ...], str]:
        return ("exact_match", "f1"), "f1"

    # ---- Batches and loss

    def features(self, tokenizer: Any, table: Any, max_length: int, stride: int,
                 with_offsets: bool = True) -> tuple[Any, dict[str, Any]]:  # fmt: skip
        """The windows of every question (:func:`encode_windows`) as an Arrow table of model inputs and ``labels``
        (start, end, row), and what evaluation keeps of them."""
        import pyarrow as pa

        answers = table.column("answers").to_pylist()
        first = [(a["answer_start"][0], a["answer_start"][0] + len(a["text"][0])) for a in answers]
        encoded, windows = encode_windows(tokenizer, table.column("question").to_pylist(),
                                          table.column("context").to_pylist(), first, max_length, stride,
                                          with_offsets=with_offsets)  # fmt: skip
        columns = {name: window_rows(encoded, name) for name in MODEL_INPUTS if name in encoded}
        count = len(windows["example"])
        labels = np.stack([windows["start_positions"], windows["end_positions"], np.arange(count)], axis=1)
        columns["labels"] = pa.FixedSizeListArray.from_arrays(pa.array(labels.reshape(-1).astype(np.int64)), 3)
        return pa.table(columns), windows

    def encode(self, tokenizer: Any, table: Any, max_length: int, config: Any = None) -> Any:
        """The windows of the questions, labelled; what the metrics need of them is kept in :attr:`evaluation`."""
        stride = config.doc_stride if config is not None else 128
        encoded, windows = self.features(tokenizer, table, max_length, stride)
        self.evaluation = Evaluation(
            np.asarray(windows["example"], dtype=np.int64), windows["offsets"], table.column("context").to_pylist(),
            [a["text"] for a in table.column("answers").to_pylist()],
            config.n_best if config is not None else 20, config.max_answer_length if config is not None else 30,
        )  # fmt: skip
        return encoded

    def train_loader(self, config: Any, tokenizer: Any, table: Any, rank: int, world: int) -> Any:
        """Padded batches of windows, reshuffled each epoch (length-bucketed unless ``--bucketing none``), this
        rank's share (the windows of a question may fall in different batches, as with the course's Trainer)."""
        encoded, _ = self.features(tokenizer, table, config.max_length, config.doc_stride, with_offsets=False)
        return SentenceBatches(encoded, self.eval_collator(tokenizer), config.batch_size, config.seed,
                               config.bucketing == "length", rank, world)  # fmt: skip

    def eval_collator(self, tokenizer: Any) -> Callable[[Any], dict]:
        import torch

        from ...collators import DataCollatorWithPadding

        collator = DataCollatorWithPadding(tokenizer)

        def collate(rows: Any) -> dict:
            batch = dict(collator(rows.select([n for n in rows.column_names if n != "labels"])))
            batch["labels"] = torch.tensor(rows.column("labels").to_pylist(), dtype=torch.long)
            return batch

        return collate

    def logits(self, output: Any) -> Any:
        """(batch, length, 2): the start and end logits of every token."""
        import torch

        return torch.stack([output.start_logits, output.end_logits], dim=-1)

    def loss(self, logits: Any, labels: Any) -> Any:
        """BertForQuestionAnswering's loss (positions clamped, those past the end ignored), summed over windows."""
        import torch.nn.functional as F

        logits = logits.float()
        ignored = logits.shape[1]
        start, end = labels[:, 0].clamp(0, ignored), labels[:, 1].clamp(0, ignored)
        start_loss = F.cross_entropy(logits[..., 0], start, ignore_index=ignored, reduction="sum")
        end_loss = F.cross_entropy(logits[..., 1], end, ignore_index=ignored, reduction="sum")
        return (start_loss + end_loss) / 2

    # ---- Metrics

    def eval_outputs(self, logits: Any) -> np.ndarray | None:
        """Each window's (length, 2) start and end logits (its padded row)."""
        return rows_of(logits.float().cpu().numpy())

    def eval_labels(self, labels: Any) -> np.ndarray:
        """Each window's (start, end, row)."""
        return labels.cpu().numpy()

    def metrics(self, names: tuple[str, ...], loss: float, outputs: np.ndarray | None, labels: np.ndarray | None,
                label_names: list[str] | None = None) -> dict[str, float]:  # fmt: skip
        assert outputs is not None and labels is not None
        evaluation = self.evaluation
        if evaluation is None or len(labels) != len(evaluation.offsets) or not np.array_equal(
            labels[:, 2], np.arange(len(labels))
        ):  # fmt: skip
            raise RuntimeError("question-answering metrics need the windows encode() built last, in its order")
        lengths = [len(offsets) for offsets in evaluation.offsets]
        starts = [output[:length, 0] for output, length in zip(outputs, lengths)]
        ends = [output[:length, 1] for output, length in zip(outputs, lengths)]
        predicted = best_answers(starts, ends, evaluation.feature_examples, evaluation.offsets, evaluation.contexts,
                                 evaluation.n_best, evaluation.max_answer_length)  # fmt: skip
        scores = squad_scores([p["answer"] for p in predicted], evaluation.answers)
        return {name: scores[name] for name in names}

    # ---- Prediction

    def saved_options(self, config: Any) -> dict[str, Any]:
        return {"doc_stride": config.doc_stride, "n_best": config.n_best, "max_answer_length": config.max_answer_length}

    def predict_options(self, saved: dict[str, Any]) -> dict[str, Any]:
        return {key: saved[key] for key in ("doc_stride", "n_best", "max_answer_length") if key in saved}

    def predict(self, model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None, *, batch_size: int,
                max_length: int | None, label_names: list[str] | None, doc_stride: int = 128, n_best: int = 20,
                max_answer_length: int = 30) -> list[Any]:  # fmt: skip
        """The answer to each question (``texts``) in its context (``pairs``): ``{"score", "start", "end",
        "answer"}`` as the question-answering pipeline returned it (transformers 5 no longer has one). The span is
        the course's post-processing's (:func:`best_answers`, over all windows of a long context, with the run's
        ``--doc-stride``, ``--n-best`` and ``--max-answer-length``); ``score`` is its probability in its window
        (softmax of the start logits times softmax of the end logits, as the pipeline scored spans)."""
        import torch

        if pairs is None or len(pairs) != len(texts):
            raise ConfigError(
                "question answering reads (question, context) pairs: give each question its context (Python: "
                "predict(model, questions, contexts); command line: 'question<TAB>context' lines, or --text-column "
                "and --text-pair-column)"
            )
        for i, (question, context) in enumerate(zip(texts, pairs)):
            if not isinstance(question, str) or not isinstance(context, str):
                raise ConfigError(f"pair {i}: the question and the context must be strings")
        if not texts:
            return []
        encoded, windows = encode_windows(tokenizer, texts, pairs, [(0, 0)] * len(texts), max_length or 384,
                                          doc_stride)  # fmt: skip
        bounds = encoded["_starts"]
        lengths = np.diff(bounds)
        rows = {key: np.split(encoded[key], bounds[1:-1]) for key in MODEL_INPUTS if key in encoded}
        starts: list[np.ndarray] = [np.empty(0)] * len(lengths)
        ends: list[np.ndarray] = [np.empty(0)] * len(lengths)
        order = np.argsort(lengths, kind="stable")
        with torch.no_grad():
            for first in range(0, len(order), batch_size):
                chosen = order[first : first + batch_size]
                batch = tokenizer.pad([{key: rows[key][i] for key in rows} for i in chosen], return_tensors="pt")
                logits = self.logits(model(**batch)).float().numpy()
                for row, i in zip(logits, chosen):
                    n = lengths[i]
                    row = row[:n] if tokenizer.padding_side == "right" else row[len(row) - n :]
                    starts[i], ends[i] = row[:, 0], row[:, 1]
        # Each window on its own (the best over a question's windows is the best of the windows' bests), so that
        # the winning window is known for its probability.
        per_window = best_answers(starts, ends, range(len(lengths)), windows["offsets"],
                                  [pairs[e] for e in windows["example"]], n_best, max_answer_length)  # fmt: skip
        best: list[tuple[float, int] | None] = [None] * len(texts)
        for window, (found, example) in enumerate(zip(per_window, windows["example"])):
            score = found["logit_score"]
            if score is not None and (best[example] is None or score > best[example][0]):
                best[example] = (score, window)
        results = []
        for chosen in best:
            if chosen is None:  # no valid span in any window
                results.append({"score": 0.0, "start": 0, "end": 0, "answer": ""})
                continue
            window = chosen[1]
            found, offsets = per_window[window], windows["offsets"][window]
            start_token = next(k for k, o in enumerate(offsets) if o is not None and o[0] == found["start"])
            end_token = max(k for k, o in enumerate(offsets) if o is not None and o[1] == found["end"])
            probability = softmax(starts[window])[start_token] * softmax(ends[window])[end_token]
            results.append({"score": float(probability), "start": found["start"], "end": found["end"],
                            "answer": found["answer"]})  # fmt: skip
        return results


def softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


# --------------------------------------------------------------------------------------------------
# Rows


def answer_lists(values: Any, source: Any, ids: list[str]) -> list[tuple[list[str], list[int]]]:
    """Each question's (answer texts, answer starts), from ``{"text": [...], "answer_start": [...]}`` (the
    ``squad`` dataset's) or a list of ``{"text", "answer_start"}``."""
    import pyarrow as pa

    kind = values.type
    shape = 'must be {"text": [...], "answer_start": [...]} or a list of {"text", "answer_start"}'
    if pa.types.is_struct(kind):
        fields = {kind.field(i).name for i in range(kind.num_fields)}
    elif (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_struct(kind.value_type):
        fields = {kind.value_type.field(i).name for i in range(kind.value_type.num_fields)}
    else:
        raise DataError(f"answers column of {source} holds {kind}: it {shape}")
    if not {"text", "answer_start"} <= fields:
        raise DataError(f"answers column of {source} has the fields {sorted(fields)}: it {shape}")
    result = []
    for row, value in enumerate(values.to_pylist()):
        if value is None:
            raise DataError(f"{source.where(row)} (question id {ids[row]!r}): the answers are missing")
        if isinstance(value, dict):
            texts, starts = value["text"], value["answer_start"]
        else:
            texts = [a["text"] if a else None for a in value]
            starts = [a["answer_start"] if a else None for a in value]
        texts, starts = texts or [], starts or []
        problem = None
        if len(texts) != len(starts):
            problem = f"{len(texts)} answer texts but {len(starts)} answer_start values"
        elif not all(isinstance(t, str) for t in texts):
            problem = f"answer texts {texts} are not all text"
        elif not all(isinstance(s, int) and not isinstance(s, bool) for s in starts):
            problem = f"answer_start values {starts} are not all integers"
        if problem:
            raise DataError(f"{source.where(row)} (question id {ids[row]!r}): {problem}")
        result.append((texts, starts))
    return result


# --------------------------------------------------------------------------------------------------
# Windows (the course's preprocessing)


def encode_windows(tokenizer: Any, questions: list[str], contexts: list[str], answers: Sequence[tuple[int, int]],
                   max_length: int, stride: int, *,
                   with_offsets: bool = True) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """The course's ``preprocess_training_examples`` and ``preprocess_validation_examples`` in one pass, for all
    windows at once: the tokenizer's windows (``truncation="only_second"``, ``stride``, no padding) as flat arrays
    (``encoded``: ``input_ids``, ... and the rows' ``_starts``) and, for each window, its question (``example``),
    the token positions of the answer ``(start_char, end_char)`` of its question, or (0, 0) when the window does not
    hold all of it (``start_positions`` / ``end_positions``, the course's loops computed in NumPy), and with
    ``with_offsets`` its offsets with None outside the context (``offsets``, what the post-processing reads)."""
    try:
        encoded = tokenizer._encode_flat([q.strip() for q in questions], contexts, max_length=max_length,
                                         stride=stride, truncation="only_second", return_overflowing_tokens=True,
                                         return_offsets_mapping=True)  # fmt: skip
    except (InvalidArgumentError, TokenizationError) as error:  # a question too long for the window (and stride)
        raise DataError(
            f"cannot cut the contexts into windows of {max_length} tokens overlapping by {stride}: {error} (a "
            "question leaves too little room for its context: use a larger --max-length or a smaller --doc-stride)"
        ) from error
    bounds = encoded["_starts"]
    example = encoded["overflow_to_sample_mapping"]
    offsets = encoded.pop("offset_mapping").reshape(-1, 2)
    in_context = encoded.pop("_sequence_ids") == 1
    lengths = np.diff(bounds)
    window = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(window))
    context_start = np.full(len(lengths), len(window))
    np.minimum.at(context_start, window[in_context], position[in_context])
    context_end = np.full(len(lengths), -1)
    np.maximum.at(context_end, window[in_context], position[in_context])
    empty = np.flatnonzero(context_end < 0)
    if len(empty):  # no room for the context (a question of about max_length tokens)
        question = int(example[empty[0]])
        raise DataError(
            f"question {question} ({questions[question][:60]!r}) leaves no room for its context in {max_length} "
            "tokens: use a larger --max-length or a shorter question"
        )
    answer = np.asarray(answers, dtype=np.int64).reshape(-1, 2)[example]
    start_char, end_char = answer[:, 0], answer[:, 1]
    outside = (offsets[context_start, 0] > start_char) | (offsets[context_end, 1] < end_char)
    # The course walks from the context's start while offset start <= start_char: the start is the token before
    # the first context token past start_char (or the context's last); and back from its end while offset end >=
    # end_char: the end is the token after the last context token ending before end_char (or the context's first).
    past = np.full(len(lengths), len(window))
    chosen = in_context & (offsets[:, 0] > start_char[window])
    np.minimum.at(past, window[chosen], position[chosen])
    start_token = np.minimum(past, context_end + 1) - 1
    before = np.full(len(lengths), -1)
    chosen = in_context & (offsets[:, 1] < end_char[window])
    np.maximum.at(before, window[chosen], position[chosen])
    end_token = np.maximum(before, context_start - 1) + 1
    start_positions = np.where(outside, 0, start_token - bounds[:-1])
    end_positions = np.where(outside, 0, end_token - bounds[:-1])
    windows = {"example": example.tolist(), "start_positions": start_positions.tolist(),
               "end_positions": end_positions.tolist()}  # fmt: skip
    if with_offsets:
        pairs = list(zip(offsets[:, 0].tolist(), offsets[:, 1].tolist()))
        kept = in_context.tolist()
        masked = [pair if keep else None for pair, keep in zip(pairs, kept)]
        edges = bounds.tolist()
        windows["offsets"] = [masked[a:b] for a, b in zip(edges[:-1], edges[1:])]
    return encoded, windows


def window_rows(encoded: dict[str, np.ndarray], name: str) -> Any:
    """A flat column of :func:`encode_windows` as an Arrow list<int64> array, one row per window."""
    import pyarrow as pa

    return pa.ListArray.from_arrays(pa.array(encoded["_starts"].astype(np.int32)), pa.array(encoded[name]))


# --------------------------------------------------------------------------------------------------
# Post-processing (the course's) and SQuAD v1.1's metrics


def best_answers(start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray], feature_examples: Any,
                 offsets: Sequence[Sequence[tuple[int, int] | None]], contexts: Sequence[str], n_best: int = 20,
                 max_answer_length: int = 30) -> list[dict[str, Any]]:  # fmt: skip
    """The best answer of each question (``contexts[i]``'s) over all of its windows, as the course's
    ``compute_metrics`` finds it: in each window, every pair of the ``n_best`` highest start and end logits that
    spans context tokens (offsets not None), ends after it starts and is at most ``max_answer_length`` tokens long;
    the pair with the highest start + end logit wins. ``start_logits[f]`` / ``end_logits[f]`` / ``offsets[f]``:
    window ``f``'s (one entry per token); ``feature_examples[f]``: its question. Returns, per question,
    ``{"answer": text, "start": char, "end": char, "logit_score": start + end logit}`` (``""`` / None when no span
    is valid)."""
    windows_of: list[list[int]] = [[] for _ in contexts]
    for feature, example in enumerate(feature_examples):
        windows_of[int(example)].append(feature)
    results = []
    for example, context in enumerate(contexts):
        best: dict[str, Any] = {"answer": "", "start": 0, "end": 0, "logit_score": None}
        for feature in windows_of[example]:
            start_logit, end_logit, offset = start_logits[feature], end_logits[feature], offsets[feature]
            start_indexes = np.argsort(start_logit)[-1 : -n_best - 1 : -1].tolist()
            end_indexes = np.argsort(end_logit)[-1 : -n_best - 1 : -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if offset[start_index] is None or offset[end_index] is None:
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    score = float(start_logit[start_index] + end_logit[end_index])
                    if best["logit_score"] is None or score > best["logit_score"]:
                        start, end = offset[start_index][0], offset[end_index][1]
                        best = {"answer": context[start:end], "start": start, "end": end, "logit_score": score}
        results.append(best)
    return results


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, no punctuation, no articles (a, an, the), single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


_PUNCTUATION = frozenset(string.punctuation)


def answer_f1(prediction: str, truth: str) -> float:
    """SQuAD v1.1's token F1 of two answers (after normalisation)."""
    predicted, true = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((Counter(predicted) & Counter(true)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(true)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """SQuAD v1.1's exact match and F1, in percent (0-100): each prediction scored against its best gold answer,
    averaged over the questions."""
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    exact = f1 = 0.0
    for prediction, truths in zip(predictions, answers, strict=True):
        exact += max(float(normalize_answer(prediction) == normalize_answer(t)) for t in truths)
        f1 += max(answer_f1(prediction, t) for t in truths)
    return {"exact_match": 100.0 * exact / len(predictions), "f1": 100.0 * f1 / len(predictions)}
