"""Masked language modelling: domain adaptation of an encoder on unlabelled text (the Hugging Face course, chapter 7
section 3, "Fine-tuning a masked language model" on IMDB), ``AutoModelForMaskedLM``.

Data: one text column. Preprocessing is the course's ``group_texts``: every text is tokenized whole (with its
special tokens, no truncation), the token ids of all texts are concatenated in file order and cut into blocks of
``max_length`` tokens (the course's ``chunk_size``, 128). The course drops the last, partial block; ferrotune keeps
it as one shorter last block (padded in its batch, the padding never masked), so no text is lost. Training batches
are masked anew each time, as ``DataCollatorForLanguageModeling`` masks them: ``mlm_probability`` (0.15) of the
tokens that are not special are selected, of those 80% become [MASK], 10% a random token, 10% stay; with
``--whole-word-mask`` a selected word is masked whole, every token becoming [MASK]. The evaluation blocks are masked
once, from the run's seed (the course's ``insert_random_mask``), so every evaluation scores the same masks.

The loss is the cross-entropy over the masked tokens (mean over them); the metric is perplexity = exp(loss).

The model: the encoder with its masked-LM head. A folder without a head's weights (a sentence-transformers model
such as all-MiniLM-L6-v2) gets a new one: for BERT the ``cls.predictions.transform`` dense layer and LayerNorm are
new and the output bias zeros; the decoder's weight is tied to the word embeddings. PEFT has no masked-LM task type:
the LoRA adapter is a plain ``PeftModel`` whose ``modules_to_save`` are the head's modules other than the tied
decoder (:func:`head_modules`), trained in full and saved with the adapter. The output bias is a parameter of the
head, not a module: with LoRA it keeps its initial value (zeros for a new head, the checkpoint's otherwise); full
fine-tuning (``--lora-r 0``) trains it too."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from .base import Task, first_row
from .token_classification import SentenceBatches

MLM = "mlm"
IGNORED = -100  # labels the loss ignores (transformers' convention)
DEFAULT_MLM_PROBABILITY = 0.15
MASKING_CHUNK = 256  # blocks masked together when the evaluation masks are drawn


class MaskedLM(Task):
    kind = MLM
    model_class = "AutoModelForMaskedLM"
    peft_task_type = None  # PEFT has no masked-LM task type: a plain PeftModel, the head in modules_to_save
    pipeline_tag = "fill-mask"
    label_column = None  # the labels are the masked tokens
    masks_tokens = True
    predicts = False

    def check_config(self, config: Any) -> None:
        if config.packing:
            raise ConfigError(
                "mlm always groups the texts into blocks of max_length tokens (the course's group_texts): "
                "--packing does not apply"
            )
        super().check_config(config)
        if config.text_pair_column or config.label_column or config.label_names:
            raise ConfigError(
                "mlm trains on one text column: text_pair_column, label_column and label_names do not apply"
            )

    # ---- Columns and rows

    def texts(self, table: Any, columns: dict[str, str], source: Any) -> dict[str, Any]:
        import pyarrow.compute as pc

        examples = super().texts(table, columns, source)
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(examples["text"])), 0)
        if pc.any(blank).as_py():
            count = pc.sum(blank).as_py()
            raise DataError(
                f"text column {columns['text']!r} is empty in {source.where(first_row(blank))} ({count} empty "
                f"text(s) in {source}): masked-LM training needs text; remove the empty examples"
            )
        return examples

    def default_metrics(self, label_names: list[str] | None) -> tuple[tuple[str, ...], str]:
        return ("perplexity",), "perplexity"

    # ---- Model

    def modules_to_save(self, model: Any) -> list[str] | None:
        return head_modules(model)

    # ---- Batches and loss

    def encode(self, tokenizer: Any, table: Any, max_length: int, config: Any = None) -> Any:
        """The evaluation blocks, masked once from the run's seed: ``input_ids`` (masked), ``attention_mask``
        (``token_type_ids``) and ``labels`` (the original ids of the masked tokens, -100 elsewhere)."""
        blocks = group_texts(tokenizer, table.column("text").to_pylist(), max_length, whole_words(config))
        collator = masking_collator(tokenizer, config, seed=config.seed if config else 0, return_tensors="np")
        return mask_once(blocks, collator)

    def train_loader(self, config: Any, tokenizer: Any, table: Any, rank: int, world: int) -> Any:
        """Batches of blocks in a new order each epoch, this rank's share, masked as they are drawn (the masks'
        seeds come from torch's generator: seeded by the run, restored by a resumed run)."""
        blocks = group_texts(tokenizer, table.column("text").to_pylist(), config.max_length, whole_words(config))
        collator = masking_collator(tokenizer, config)
        return SentenceBatches(blocks, lambda rows: dict(collator(rows)), config.batch_size, config.seed, False,
                               rank, world)  # fmt: skip

    def eval_collator(self, tokenizer: Any) -> Callable[[Any], dict]:
        """Masked blocks padded into a batch (labels padded with -100)."""
        from ...collators import DataCollatorForTokenClassification

        collator = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORED)
        return lambda rows: dict(collator(rows))

    def loss(self, logits: Any, labels: Any) -> Any:
        import torch.nn.functional as F

        logits = logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORED,
                               reduction="sum")  # fmt: skip

    def loss_items(self, batch: dict) -> int:
        """The masked tokens."""
        return int((batch["labels"] != IGNORED).sum())

    # ---- Metrics and prediction

    def eval_outputs(self, logits: Any) -> np.ndarray | None:
        return None  # the loss is all perplexity needs

    def metrics(self, names: tuple[str, ...], loss: float, outputs: np.ndarray | None, labels: np.ndarray | None,
                label_names: list[str] | None = None) -> dict[str, float]:  # fmt: skip
        return {"perplexity": math.exp(min(loss, 50.0))}

    def check_predicts(self) -> None:
        raise ConfigError(
            "predict classifies texts; this folder holds a masked language model: fill masks with transformers' "
            "pipeline('fill-mask', model=...) on the model (a LoRA adapter merged first: "
            "PeftModel.from_pretrained(AutoModelForMaskedLM.from_pretrained(base), folder).merge_and_unload())"
        )


# --------------------------------------------------------------------------------------------------
# Blocks and masks


def whole_words(config: Any) -> bool:
    return bool(config is not None and config.whole_word_mask)


def group_texts(tokenizer: Any, texts: list[str], block_size: int, word_ids: bool = False) -> Any:
    """The course's ``group_texts``: the texts tokenized whole (special tokens included), their tokens concatenated
    in order and cut into blocks of ``block_size``; the remainder is a shorter LAST block (the course drops it).
    Columns: the tokenizer's (input_ids, token_type_ids, attention_mask), and with ``word_ids`` each token's word
    index within its text (None for special tokens), for whole-word masking."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns: dict[str, np.ndarray] = {}
    if word_ids:
        encoded = tokenizer(texts, verbose=False)
        for name in encoded.keys():
            flat = chain.from_iterable(encoded[name])
            columns[name] = np.fromiter(flat, dtype=np.int64)
        words = [encoded.word_ids(i) for i in range(len(texts))]
    else:
        encoded = tokenizer(texts, return_tensors="arrow", verbose=False)
        for name in encoded.schema.names:
            flat = pc.list_flatten(encoded.column(name))
            columns[name] = flat.to_numpy(zero_copy_only=False).astype(np.int64)
    total = len(columns["input_ids"])
    offsets = pa.array(np.append(np.arange(0, total, block_size), total).astype(np.int32))
    table = {name: pa.ListArray.from_arrays(offsets, pa.array(values)) for name, values in columns.items()}
    if word_ids:
        table["word_ids"] = pa.ListArray.from_arrays(offsets, pa.array(list(chain.from_iterable(words)), pa.int64()))
    return pa.table(table)


def masking_collator(tokenizer: Any, config: Any, seed: int | None = None, return_tensors: str = "pt") -> Any:
    """``DataCollatorForLanguageModeling`` with the run's options (whole words: every masked token becomes
    [MASK], as transformers and the course mask them)."""
    from ...collators import DataCollatorForLanguageModeling

    probability = getattr(config, "mlm_probability", None)
    whole = whole_words(config)
    return DataCollatorForLanguageModeling(
        tokenizer, mlm=True, mlm_probability=DEFAULT_MLM_PROBABILITY if probability is None else probability,
        whole_word_mask=whole, mask_replace_prob=1.0 if whole else 0.8, random_replace_prob=0.0 if whole else 0.1,
        seed=seed, return_tensors=return_tensors,
    )  # fmt: skip


def mask_once(blocks: Any, collator: Any) -> Any:
    """The blocks masked by ``collator`` (seeded: the same masks every time), in chunks of blocks in order:
    masked ``input_ids`` and ``labels``, the other columns as they are (``word_ids`` consumed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids_type = blocks.column("input_ids").type
    lengths = pc.list_value_length(blocks.column("input_ids")).to_numpy(zero_copy_only=False)
    masked, labels = [], []
    for start in range(0, blocks.num_rows, MASKING_CHUNK):
        batch = collator(blocks.slice(start, MASKING_CHUNK))
        kept = np.arange(batch["input_ids"].shape[1]) < lengths[start : start + MASKING_CHUNK, None]
        masked.append(batch["input_ids"][kept])  # padding (right side) dropped again
        labels.append(batch["labels"][kept])
    offsets = pa.array(np.append(0, np.cumsum(lengths)).astype(np.int32))
    columns = {name: blocks.column(name) for name in blocks.column_names if name not in ("input_ids", "word_ids")}
    columns["input_ids"] = pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(masked))).cast(ids_type)
    columns["labels"] = pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(labels).astype(np.int64)))
    return pa.table(columns)


def head_modules(model: Any) -> list[str]:
    """The modules of a masked-LM head that LoRA training saves in full: the siblings of the output layer (which
    is tied to the word embeddings) that hold parameters: ``cls.predictions.transform`` for BERT,
    ``lm_head.dense`` and ``lm_head.layer_norm`` for RoBERTa, ``vocab_transform`` and ``vocab_layer_norm`` for
    DistilBERT."""
    output = model.get_output_embeddings()
    names = {id(module): name for name, module in model.named_modules()}
    if output is None or id(output) not in names:
        raise ConfigError(f"cannot find the masked-LM head of {type(model).__name__} (no output embeddings)")
    decoder = names[id(output)]
    parent = decoder.rpartition(".")[0]
    if parent:
        candidates = [f"{parent}.{name}" for name, _ in model.get_submodule(parent).named_children()]
    else:  # the head's layers sit next to the encoder (DistilBERT)
        candidates = [name for name, _ in model.named_children() if name != model.base_model_prefix]
    return [
        name for name in candidates
        if name != decoder and next(model.get_submodule(name).parameters(), None) is not None
    ]  # fmt: skip
