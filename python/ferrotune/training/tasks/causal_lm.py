"""Causal language modelling (supervised fine-tuning on one text column): token t predicts token t+1
(``AutoModelForCausalLM``, PEFT's ``CAUSAL_LM``). Training packs documents into full rows of max_length tokens
(position ids restart at each document and the attention mask is block-diagonal, so documents never see each
other); evaluation runs per document, padded, so the loss does not depend on how documents happen to be packed.
The loss is the mean over predicted tokens; the metric is perplexity."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import ConfigError
from .base import Task, loader_options

CAUSAL_LM = "causal-lm"
LABEL_SENTINEL = -100  # positions the loss ignores (transformers' convention)


class CausalLM(Task):
    kind = CAUSAL_LM
    model_class = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    pipeline_tag = "text-generation"
    label_column = None  # the labels are the input ids
    packs_documents = True
    predicts = False

    def check_config(self, config: Any) -> None:
        super().check_config(config)
        if config.text_pair_column or config.label_names:
            raise ConfigError("causal-lm trains on one text column: text_pair_column and label_names do not apply")

    def default_metrics(self, label_names: list[str] | None) -> tuple[tuple[str, ...], str]:
        return ("perplexity",), "perplexity"

    # ---- Batches and loss

    def train_loader(self, config: Any, tokenizer: Any, table: Any, rank: int, world: int) -> Any:
        """Packed: rows of batch_size x max_length tokens, position ids restarting at each document. With
        ``--no-packing``, padded batches of documents as for the other tasks."""
        if not config.use_packing:
            return super().train_loader(config, tokenizer, table, rank, world)
        from ...streaming import StreamingLoader

        return StreamingLoader(table, tokenizer, packing=True, max_tokens=config.batch_size * config.max_length,
                               **loader_options(config, rank, world))  # fmt: skip

    def eval_collator(self, tokenizer: Any) -> Callable[[Any], dict]:
        """Padded input ids, attention mask, and labels = input ids with the padding ignored."""
        from ...collators import DataCollatorWithPadding

        collator = DataCollatorWithPadding(tokenizer)

        def collate(rows: Any) -> dict:
            batch = dict(collator(rows.select(["input_ids", "attention_mask"])))
            batch["labels"] = padding_ignored(batch["input_ids"], batch["attention_mask"])
            return batch

        return collate

    def prepare_batch(self, batch: dict, device: Any) -> dict:
        """Packed batches get the block-diagonal mask; padded ones the labels."""
        batch = super().prepare_batch(batch, device)
        if "attention_mask" not in batch:
            batch["attention_mask"] = packed_causal_mask(batch["position_ids"])
        elif "labels" not in batch:
            batch["labels"] = padding_ignored(batch["input_ids"], batch["attention_mask"])
        return batch

    def loss(self, logits: Any, labels: Any) -> Any:
        import torch.nn.functional as F

        logits = logits.float()
        return F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
            ignore_index=LABEL_SENTINEL, reduction="sum",
        )  # fmt: skip

    def loss_items(self, batch: dict) -> int:
        """The predicted tokens."""
        return int((batch["labels"][:, 1:] != LABEL_SENTINEL).sum())

    # ---- Metrics and prediction

    def eval_outputs(self, logits: Any) -> np.ndarray | None:
        return None  # the loss is all perplexity needs

    def metrics(self, names: tuple[str, ...], loss: float, outputs: np.ndarray | None, labels: np.ndarray | None,
                label_names: list[str] | None = None) -> dict[str, float]:  # fmt: skip
        return {"perplexity": math.exp(min(loss, 50.0))}

    def check_predicts(self) -> None:
        raise ConfigError("predict classifies texts; this folder holds a causal language model")


def padding_ignored(input_ids: Any, attention_mask: Any) -> Any:
    """Labels: the input ids, with padded positions set to the ignored label."""
    return input_ids.masked_fill(attention_mask == 0, LABEL_SENTINEL)


def packed_causal_mask(position_ids: Any) -> Any:
    """A (batch, 1, L, L) boolean mask for rows of packed documents: causal, and each token attends only to its
    own document (a document starts where the position ids restart at 0). Eager and SDPA attention ignore
    position ids when masking, so without it packed documents would see each other."""
    import torch

    document = torch.cumsum(position_ids == 0, dim=1)
    length = position_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    return ((document[:, :, None] == document[:, None, :]) & causal)[:, None]
