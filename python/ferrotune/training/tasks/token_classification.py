"""Token classification (NER): one tag per word of a sentence given as a list of words, predicted by a head on
every token of the encoder (``AutoModelForTokenClassification``, PEFT's ``TOKEN_CLS``).

Data: CoNLL files (``word ... tag`` lines, a blank line between sentences; ``--format conll`` or a ``.conll``
extension) or JSONL / Parquet / Arrow rows with a list of words (``tokens``) and a list of tags (``ner_tags``: names,
or ids with ``--label-names``). Preprocessing is the Hugging Face course's: the words are tokenized with
``is_split_into_words=True``; a word's tag goes on its first sub-token, the other sub-tokens and the special tokens
get -100 (ignored by the loss and the metrics), or with ``--label-all-tokens`` every sub-token gets the tag (a B- tag
becoming I- after the first). Batches are padded as ``DataCollatorForTokenClassification`` pads them (labels with
-100). The loss is the mean over labelled tokens; the metrics are seqeval's entity precision / recall / F1 and
token accuracy over the labelled tokens (IOB2 tags, seqeval's default mode)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError, LabelError
from ..metrics import entity_scores
from .base import Task, column, first_row

TOKEN_CLASSIFICATION = "token-classification"
IGNORED = -100  # labels the loss and the metrics skip (transformers' convention)


class TokenClassification(Task):
    kind = TOKEN_CLASSIFICATION
    model_class = "AutoModelForTokenClassification"
    peft_task_type = "TOKEN_CLS"
    pipeline_tag = "token-classification"
    labels_words = True

    def check_config(self, config: Any) -> None:
        super().check_config(config)
        if config.text_pair_column:
            raise ConfigError("token-classification tags the words of one sentence: text_pair_column does not apply")

    # ---- Columns, rows and labels

    def columns(self, config: Any, preset: Any) -> dict[str, str]:
        return {"words": config.text_column or "tokens", "tags": config.label_column or "ner_tags"}

    def rows(self, table: Any, columns: dict[str, str], source: Any,
             label_names: list[str] | None) -> tuple[Any, list[str] | None]:  # fmt: skip
        """``words`` (list of text), ``labels`` (tag ids) and ``inside_labels`` (the tag ids a word's later
        sub-tokens get with --label-all-tokens: its I- tag for a B- tag), checked sentence by sentence."""
        import pyarrow as pa
        import pyarrow.compute as pc

        words = lists(column(table, columns["words"], "words", source), columns["words"], "words", source)
        tags = lists(column(table, columns["tags"], "tags", source), columns["tags"], "tags", source)
        if not (pa.types.is_string(words.type.value_type) or pa.types.is_large_string(words.type.value_type)
                or pa.types.is_null(words.type.value_type)):  # fmt: skip
            row = first_row(pc.greater(pc.list_value_length(words), 0))
            raise DataError(
                f"words column {columns['words']!r} holds {words.type.value_type} words, not text: the first in "
                f"{source.where(row)} ({words[row].as_py()[:5]}...)"
            )
        word_counts, tag_counts = pc.list_value_length(words), pc.list_value_length(tags)
        mismatch = pc.not_equal(word_counts, tag_counts)
        if pc.any(mismatch).as_py():
            row = first_row(mismatch)
            raise DataError(
                f"{source.where(row)}: the sentence has {word_counts[row].as_py()} words but "
                f"{tag_counts[row].as_py()} tags (one tag per word)"
            )
        for values, name, role in ((words, columns["words"], "word"), (tags, columns["tags"], "tag")):
            flat = pc.list_flatten(values)
            if flat.null_count:
                row = pc.list_parent_indices(values)[first_row(pc.is_null(flat))].as_py()
                raise DataError(f"{source.where(row)}: a {role} of column {name!r} is empty (null)")
        ids, label_names = self.tag_ids(tags, columns["tags"], source, label_names)
        inside = np.asarray(inside_ids(label_names), dtype=np.int64)
        offsets = tags.offsets
        labels = pa.ListArray.from_arrays(offsets, pa.array(ids, pa.int64()))
        inside_labels = pa.ListArray.from_arrays(offsets, pa.array(inside[ids] if len(ids) else ids, pa.int64()))
        return pa.table({"words": words, "labels": labels, "inside_labels": inside_labels}), label_names

    def tag_ids(self, tags: Any, name: str, source: Any,
                label_names: list[str] | None) -> tuple[np.ndarray, list[str]]:  # fmt: skip
        """Every tag of every sentence as an id of the label set (given, or the training data's tags)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        flat = pc.list_flatten(tags)
        parents = pc.list_parent_indices(tags)
        if pa.types.is_string(flat.type) or pa.types.is_large_string(flat.type) or pa.types.is_null(flat.type):
            strings = flat.to_pylist()
            names = list(label_names) if label_names is not None else tag_order(set(strings))
            index = {label: i for i, label in enumerate(names)}
            unknown = sorted(set(strings) - set(index))
            if unknown:
                position = next(i for i, value in enumerate(strings) if value not in index)
                raise LabelError(
                    f"tags {unknown[:5]} in {source} are not in the label set {names} (the first, "
                    f"{strings[position]!r}, in the sentence at {source.where(parents[position].as_py())})"
                )
            return np.fromiter((index[v] for v in strings), np.int64, len(strings)), names
        if not pa.types.is_integer(flat.type):
            raise LabelError(f"tags (column {name!r} of {source}) must be names or ids, not {flat.type}")
        if label_names is None:
            raise LabelError(
                f"the tags of {source} (column {name!r}) are ids: give their names in id order with --label-names "
                "(e.g. O,B-PER,I-PER,...): the entity metrics read the B-/I- prefixes"
            )
        ids = flat.to_numpy(zero_copy_only=False).astype(np.int64)
        bad = np.flatnonzero((ids < 0) | (ids >= len(label_names)))
        if len(bad):
            raise LabelError(
                f"tag id {ids[bad[0]]} in the sentence at {source.where(parents[int(bad[0])].as_py())} is outside the "
                f"label set {label_names} (ids 0..{len(label_names) - 1})"
            )
        return ids, list(label_names)

    def check_labels(self, label_names: list[str] | None, train_path: Any) -> None:
        if len(label_names or []) < 2:
            raise LabelError(f"token classification needs at least 2 tags; {train_path} has {label_names}")

    def num_labels(self, label_names: list[str] | None) -> int | None:
        return len(label_names or [])

    def default_metrics(self, label_names: list[str] | None) -> tuple[tuple[str, ...], str]:
        return ("precision", "recall", "f1", "accuracy"), "f1"

    # ---- Model

    def model_options(self, label_names: list[str] | None) -> dict[str, Any]:
        options: dict[str, Any] = {"num_labels": self.num_labels(label_names)}
        if label_names is not None:
            options["id2label"] = dict(enumerate(label_names))
            options["label2id"] = {name: i for i, name in enumerate(label_names)}
        return options

    # ---- Batches and loss

    def encode(self, tokenizer: Any, table: Any, max_length: int, config: Any = None) -> Any:
        """Sub-token ids of the sentences' words and their labels (:func:`align_word_labels`, for all sentences
        at once from the encoder's word ids: the course's ``tokenize_and_align_labels`` without a Python loop)."""
        import pyarrow as pa

        label_all = bool(config is not None and config.label_all_tokens)
        sentences = table.column("words").combine_chunks()  # read by the core from Arrow, no Python object per word
        raw = tokenizer._encode_flat(sentences, max_length=max_length, is_split_into_words=True)
        starts, word_ids = raw.pop("_starts"), raw.pop("_word_ids")
        raw.pop("_sequence_ids")
        offsets = pa.array(starts.astype(np.int32))
        labels, inside = (combined(table.column(name)) for name in ("labels", "inside_labels"))
        aligned = align_word_labels(word_ids, starts, labels, inside if label_all else None)
        columns = {name: pa.ListArray.from_arrays(offsets, pa.array(values.astype(np.int64, copy=False)))
                   for name, values in raw.items()}  # fmt: skip
        columns["labels"] = pa.ListArray.from_arrays(offsets, pa.array(aligned))
        return pa.table(columns)

    def train_loader(self, config: Any, tokenizer: Any, table: Any, rank: int, world: int) -> Any:
        """Padded batches of the encoded sentences, reshuffled each epoch (length-bucketed unless
        ``--bucketing none``), this rank's share."""
        return SentenceBatches(self.encode(tokenizer, table, config.max_length, config), self.eval_collator(tokenizer),
                               config.batch_size, config.seed, config.bucketing == "length", rank, world)  # fmt: skip

    def eval_collator(self, tokenizer: Any) -> Callable[[Any], dict]:
        from ...collators import DataCollatorForTokenClassification

        collator = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORED)
        return lambda rows: dict(collator(rows))

    def loss(self, logits: Any, labels: Any) -> Any:
        import torch.nn.functional as F

        logits = logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORED,
                               reduction="sum")  # fmt: skip

    def loss_items(self, batch: dict) -> int:
        """The labelled tokens."""
        return int((batch["labels"] != IGNORED).sum())

    # ---- Metrics

    def eval_outputs(self, logits: Any) -> np.ndarray | None:
        """Each sentence's predicted tag ids (its padded row)."""
        return rows_of(logits.argmax(dim=-1).cpu().numpy())

    def eval_labels(self, labels: Any) -> np.ndarray:
        return rows_of(labels.cpu().numpy())

    def metrics(self, names: tuple[str, ...], loss: float, outputs: np.ndarray | None, labels: np.ndarray | None,
                label_names: list[str] | None = None) -> dict[str, float]:  # fmt: skip
        assert outputs is not None and labels is not None and label_names is not None
        true, predicted = [], []
        for output, label in zip(outputs, labels):
            kept = label != IGNORED
            true.append([label_names[i] for i in label[kept]])
            predicted.append([label_names[i] for i in output[kept]])
        scores = entity_scores(true, predicted)
        return {name: scores[name] for name in names}

    # ---- Prediction

    def predict(self, model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None, *, batch_size: int,
                max_length: int | None, label_names: list[str] | None) -> list[Any]:  # fmt: skip
        """The entities of each text, as ``pipeline("ner", aggregation_strategy="simple")`` gives them."""
        if pairs is not None:
            raise ConfigError("token classification tags the words of one text: it takes no text pairs")
        return tag_entities(model, tokenizer, texts, label_names or [], batch_size=batch_size,
                            max_length=max_length or 512)  # fmt: skip


def lists(values: Any, name: str, role: str, source: Any) -> Any:
    """A column of one list per sentence (no sentence missing), as one ListArray."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)):
        raise DataError(
            f"{role} column {name!r} of {source} holds {values.type}, not a list of {role} per sentence (token "
            "classification reads sentences split into words, with one tag per word)"
        )
    if values.null_count:
        raise DataError(
            f"{role} column {name!r} is empty or missing in {source.where(first_row(pc.is_null(values)))}: fill it "
            "in or remove the sentence"
        )
    values = values.combine_chunks()
    return values.cast(pa.list_(values.type.value_type)) if pa.types.is_large_list(values.type) else values


def tag_order(tags: set[str]) -> list[str]:
    """The label set found in training data: O first, then by entity type (B- before I-): CoNLL-2003 gives O,
    B-LOC, I-LOC, B-MISC, I-MISC, B-ORG, I-ORG, B-PER, I-PER."""
    prefixes = {"B": 0, "I": 1, "E": 2, "S": 3}

    def key(tag: str) -> tuple:
        if tag == "O":
            return (0, "", 0, tag)
        prefix, _, kind = tag.partition("-")
        return (1, kind, prefixes.get(prefix, 4), tag) if kind else (1, tag, 5, tag)

    return sorted(tags, key=key)


def inside_ids(label_names: list[str]) -> list[int]:
    """For each tag id, the id a word's later sub-tokens get with --label-all-tokens: I-X for B-X (when the label
    set has I-X), the tag itself otherwise (transformers' run_ner ``b_to_i_label``)."""
    index = {name: i for i, name in enumerate(label_names)}
    return [index.get("I-" + name[2:], i) if name.startswith("B-") else i for i, name in enumerate(label_names)]


def combined(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, row offsets) of a list<int64> column."""
    values = values.combine_chunks() if hasattr(values, "combine_chunks") else values
    flat = values.values.to_numpy(zero_copy_only=False)
    offsets = values.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    return flat, offsets


def align_word_labels(word_ids: np.ndarray, starts: np.ndarray, labels: tuple[np.ndarray, np.ndarray],
                      inside: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:  # fmt: skip
    """One label per sub-token of every row: ``word_ids`` flat (-1: special token) with row boundaries ``starts``;
    ``labels`` / ``inside`` as (flat tag ids, sentence offsets). A word's first sub-token gets its tag, its other
    sub-tokens -100 (with ``inside``, the word's inside tag: I-X for B-X, the course's label_all_tokens), special
    tokens -100."""
    word_ids = np.asarray(word_ids, dtype=np.int64)
    lengths = np.diff(starts)
    row = np.repeat(np.arange(len(lengths)), lengths)
    previous = np.empty_like(word_ids)
    previous[1:] = word_ids[:-1]
    previous[starts[:-1][lengths > 0]] = -1  # a row's first token has no predecessor
    is_word = word_ids >= 0
    first = is_word & (word_ids != previous)
    index = labels[1][row] + word_ids  # the tag of the token's word, in the flat tags
    aligned = np.full(len(word_ids), IGNORED, dtype=np.int64)
    aligned[first] = labels[0][index[first]]
    if inside is not None:
        later = is_word & ~first
        aligned[later] = inside[0][index[later]]
    return aligned


def rows_of(matrix: np.ndarray) -> np.ndarray:
    """A (batch, length) matrix as a 1-D object array of its rows (batches of different lengths concatenate)."""
    rows = np.empty(len(matrix), dtype=object)
    for i, row in enumerate(matrix):
        rows[i] = row
    return rows


class SentenceBatches:
    """Training batches of encoded sentences: a new order each epoch (seed, epoch), sentences of similar length
    batched together when ``bucketed`` (sorted within windows of 50 batches, the batches then shuffled), this rank's
    share (every ``world``-th batch). Resumable: ``state_dict`` is the position after the last batch yielded."""

    WINDOW_BATCHES = 50

    def __init__(self, encoded: Any, collate: Callable[[Any], dict], batch_size: int, seed: int, bucketed: bool,
                 rank: int = 0, world: int = 1) -> None:  # fmt: skip
        import pyarrow.compute as pc

        self.encoded, self.collate = encoded, collate
        self.batch_size, self.seed, self.bucketed = batch_size, seed, bucketed
        self.rank, self.world = rank, world
        self.lengths = pc.list_value_length(encoded.column("input_ids")).to_numpy(zero_copy_only=False)
        self._epoch, self._position, self._resume = 0, (0, 0), None

    def plan(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        if self.bucketed:
            window = self.batch_size * self.WINDOW_BATCHES
            order = np.concatenate([
                chunk[np.argsort(self.lengths[chunk], kind="stable")]
                for chunk in (order[i : i + window] for i in range(0, len(order), window))
            ])  # fmt: skip
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.bucketed:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches[self.rank :: self.world]

    def count_batches(self, epoch: int) -> int:
        return len(self.plan(epoch))

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)
        if self._resume is None or self._resume[0] < self._epoch:
            self._position = (self._epoch, 0)

    def __iter__(self) -> Iterator[dict]:
        epoch, start = self._epoch, 0
        if self._resume is not None and self._resume[0] >= epoch:
            if self._resume[0] > epoch:
                return
            start = self._resume[1]
        for number, indices in enumerate(self.plan(epoch)[start:], start + 1):
            self._position, self._resume = (epoch, number), None
            yield self.collate(self.encoded.take(indices))

    def state_dict(self) -> dict[str, Any]:
        epoch, batch = self._resume if self._resume is not None else self._position
        return {"kind": "sentence-batches", "epoch": epoch, "batch": batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from ...errors import StateDictError

        if not isinstance(state, dict) or state.get("kind") != "sentence-batches":
            raise StateDictError("not a token-classification loader state")
        self._resume = (int(state["epoch"]), int(state["batch"]))


# --------------------------------------------------------------------------------------------------
# Prediction: transformers' TokenClassificationPipeline with aggregation_strategy="simple"


def tag_entities(model: Any, tokenizer: Any, texts: list[str], label_names: list[str], *, batch_size: int = 64,
                 max_length: int = 512, stride: int | None = None) -> list[list[dict[str, Any]]]:  # fmt: skip
    """The entities of each text: ``[{"entity_group", "score", "word", "start", "end"}, ...]`` as
    ``pipeline("token-classification", aggregation_strategy="simple")`` returns them (tags "O" left out).

    A text longer than ``max_length`` tokens is read in windows that overlap by ``stride`` tokens (default: a
    quarter of ``max_length``); entities found in several windows are merged as the pipeline does with its
    ``stride`` option (the longest span wins, then the higher score), so nothing past the first window is lost."""
    import torch

    if stride is None:
        stride = max_length // 4
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(f"text {i} is {type(text).__name__}, not a string")
    encoded = tokenizer(texts, truncation=True, max_length=max_length, stride=stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True,
                        return_special_tokens_mask=True)  # fmt: skip
    ids, windows_of = encoded["input_ids"], encoded["overflow_to_sample_mapping"]
    model_keys = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded]
    scores: list[np.ndarray | None] = [None] * len(ids)
    order = np.argsort([len(row) for row in ids], kind="stable")
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = tokenizer.pad([{key: encoded[key][i] for key in model_keys} for i in chosen], return_tensors="pt")
            logits = model(**batch).logits.float().numpy()
            for row, i in zip(logits, chosen):
                row = row[: len(ids[i])] if tokenizer.padding_side == "right" else row[len(row) - len(ids[i]) :]
                shifted = np.exp(row - row.max(axis=-1, keepdims=True))
                scores[i] = shifted / shifted.sum(axis=-1, keepdims=True)
    entities: list[list[dict[str, Any]]] = [[] for _ in texts]
    windows = [0] * len(texts)
    unknown = tokenizer.unk_token_id
    for i, window_scores in enumerate(scores):
        text = texts[windows_of[i]]
        windows[windows_of[i]] += 1
        tokens = []
        special, offsets = encoded["special_tokens_mask"][i], encoded["offset_mapping"][i]
        for position, token_id in enumerate(ids[i]):
            if special[position]:
                continue
            token_scores = window_scores[position]
            best = int(token_scores.argmax())
            first, last = offsets[position]
            word = text[first:last] if token_id == unknown else tokenizer.convert_ids_to_tokens(token_id)
            tokens.append({"entity": label_names[best], "score": token_scores[best], "word": word, "start": first,
                           "end": last})  # fmt: skip
        found = [entity for entity in group_entities(tokens, tokenizer) if entity["entity_group"] != "O"]
        entities[windows_of[i]].extend(found)
    results = []
    for found, count in zip(entities, windows):
        found = merge_overlapping(found) if count > 1 else found
        results.append([{**entity, "score": float(entity["score"])} for entity in found])
    return results


def entity_tag(name: str) -> tuple[str, str]:
    """(B or I, entity type) of a tag; a tag without a B-/I- prefix continues (I) an entity of its own name."""
    if name.startswith("B-"):
        return "B", name[2:]
    if name.startswith("I-"):
        return "I", name[2:]
    return "I", name


def group_entities(tokens: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """Adjacent tokens of one entity type (a B- tag starts a new one) as one entity: mean score, the tokens'
    text, the first token's start and the last one's end."""
    groups: list[list[dict[str, Any]]] = []
    for token in tokens:
        bi, kind = entity_tag(token["entity"])
        if groups and bi != "B" and entity_tag(groups[-1][-1]["entity"])[1] == kind:
            groups[-1].append(token)
        else:
            groups.append([token])
    return [{
        "entity_group": group[0]["entity"].split("-", 1)[-1],
        "score": np.mean(np.nanmean([token["score"] for token in group])),
        "word": tokenizer.convert_tokens_to_string([token["word"] for token in group]),
        "start": group[0]["start"], "end": group[-1]["end"],
    } for group in groups]  # fmt: skip


def merge_overlapping(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities of overlapping windows, one per span: among overlapping ones the longest, then the higher score."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda entity: entity["start"])
    merged, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or (length == previous_length and entity["score"] > previous["score"]):
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged
