"""The Task interface: what differs between kinds of training, in one class per kind.

The data checks (data.py), the model (modeling.py), the loop (loop.py), the model card (card.py) and
``ferrotune.predict`` ask the task and never branch on its kind. A new kind of training is one module with one
``Task`` subclass, registered in ``tasks/__init__.py``. The methods come in the order of a run: options, columns
and rows, model, batches and loss, metrics, prediction. The defaults are those of a task with one text (or pair)
per example, tokenized and padded as is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ColumnNotFoundError, ConfigError, DataError

if TYPE_CHECKING:
    from ..config import TrainConfig
    from .glue import GlueTask

# Inputs a model's forward takes from a batch (StreamingLoader's packed batches also carry flash-attention-only keys).
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "decoder_input_ids")


class Task(ABC):
    kind: str  # the --task name and ferrotune_task.json's "kind"
    model_class: str  # the transformers Auto class of the model ("AutoModelForSequenceClassification")
    peft_task_type: str | None  # the peft.TaskType member of its LoRA adapter ("SEQ_CLS"; None: a plain PeftModel)
    pipeline_tag: str  # the model card's Hub pipeline tag
    label_column: str | None = "labels"  # the examples' label column (None: the text is its own target)
    packs_documents = False  # packing allowed, and on by default
    labels_words = False  # labels words of pre-split sentences (--label-all-tokens applies)
    masks_tokens = False  # masked-LM training (--mlm-probability and --whole-word-mask apply)
    generates = False  # writes a target text for a source (--target-column and --source-prefix apply)
    chats = False  # trains on conversations (--messages-column, --prompt-column, --loss-on, ... apply)
    predicts = True  # ferrotune.predict serves this task
    default_max_length = 128  # --max-length when not given

    # ---- Options

    def check_config(self, config: TrainConfig) -> None:
        """Raises ConfigError for options this task cannot honour (TrainConfig.validate's last step)."""
        if config.use_packing and not self.packs_documents:
            raise ConfigError("packing is for causal-lm and sft only: classification examples cannot share a row")
        if config.label_all_tokens and not self.labels_words:
            raise ConfigError(f"label_all_tokens is for token-classification, not {self.kind}")
        if (config.mlm_probability is not None or config.whole_word_mask) and not self.masks_tokens:
            raise ConfigError(f"mlm_probability and whole_word_mask are for mlm, not {self.kind}")
        if (config.target_column or config.source_prefix) and not self.generates:
            raise ConfigError(f"target_column and source_prefix are for seq2seq, not {self.kind}")
        chat_options = ("messages_column", "prompt_column", "completion_column", "loss_on", "drop_empty",
                        "chat_template")  # fmt: skip
        given = [name for name in chat_options if getattr(config, name)]
        if given and not self.chats:
            raise ConfigError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for sft, not {self.kind}")

    # ---- Columns, rows and labels

    def columns(self, config: TrainConfig, preset: GlueTask | None) -> dict[str, str]:
        """The columns the task reads, by role ("text", "text pair", "label"): the options', else the GLUE preset's,
        else the defaults. Every data file's header must hold them (checked before any row is parsed)."""
        text = config.text_column or (preset.text_column if preset else "text")
        pair = config.text_pair_column or (preset.text_pair_column if preset else None)
        return {"text": text, **({"text pair": pair} if pair else {})}

    def rows(self, table: Any, columns: dict[str, str], source: Any,
             label_names: list[str] | None) -> tuple[Any, list[str] | None]:  # fmt: skip
        """The examples as an Arrow table (``text``, ``text_pair``, ``labels``) from a file's table, checked, and
        the label names (those given, else the ones found in the data). ``source.where(row)`` names a row's file
        and line for the errors."""
        import pyarrow as pa

        return pa.table(self.texts(table, columns, source)), label_names

    def texts(self, table: Any, columns: dict[str, str], source: Any) -> dict[str, Any]:
        examples = {"text": text_column(table, columns["text"], "text", source)}
        if "text pair" in columns:
            examples["text_pair"] = text_column(table, columns["text pair"], "text pair", source)
        return examples

    def prepare_examples(self, config: TrainConfig, table: Any, source: Any) -> tuple[Any, int]:
        """The examples of :meth:`rows` made ready before the model is loaded, and the count of examples left out
        (counted in ``TaskData.dropped``; default: as they are, none; sft: tokenized by the chat template)."""
        return table, 0

    def check_labels(self, label_names: list[str] | None, train_path: Any) -> None:
        """Raises LabelError when the label set of the training data cannot be trained on (default: any will do)."""
        return None

    def num_labels(self, label_names: list[str] | None) -> int | None:
        """Outputs of the model's head (None: the model has no classification head)."""
        return None

    @abstractmethod
    def default_metrics(self, label_names: list[str] | None) -> tuple[tuple[str, ...], str]:
        """The metrics of a task without a GLUE preset, and the main one."""

    def run_metrics(self, config: TrainConfig, label_names: list[str] | None) -> tuple[tuple[str, ...], str]:
        """The metrics of a run without a GLUE preset (default: :meth:`default_metrics`; a task whose metrics
        depend on its options overrides this)."""
        return self.default_metrics(label_names)

    # ---- Model

    def model_options(self, label_names: list[str] | None) -> dict[str, Any]:
        """Keyword arguments of ``model_class.from_pretrained`` (the head's size and labels)."""
        return {}

    def configure_model(self, model: Any, config: TrainConfig) -> None:
        """Adjusts the loaded base model for training, before LoRA wraps it (default: nothing)."""
        return None

    def lora_targets(self, model: Any) -> list[str] | None:
        """LoRA's target modules when --lora-targets is not given (None: the attention query/value projections,
        ``modeling.auto_lora_targets``)."""
        return None

    def modules_to_save(self, model: Any) -> list[str] | None:
        """Modules of ``model`` trained in full and saved with a LoRA adapter (None: those of PEFT's task type,
        e.g. the classification head of SEQ_CLS)."""
        return None

    # ---- Batches and loss

    def encode(self, tokenizer: Any, table: Any, max_length: int, config: TrainConfig | None = None) -> Any:
        """Token ids of every example as an Arrow table (input_ids, attention_mask, ...; labels passed on).
        ``config``: the run's options, for tasks whose encoding has options of its own."""
        import pyarrow as pa

        texts = table.column("text").to_pylist()
        pairs = table.column("text_pair").to_pylist() if "text_pair" in table.column_names else None
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length, return_tensors="arrow")
        columns = {name: encoded.column(name) for name in encoded.schema.names}
        if "labels" in table.column_names:
            columns["labels"] = table.column("labels").combine_chunks()
        return pa.table(columns)

    def train_loader(self, config: TrainConfig, tokenizer: Any, table: Any, rank: int, world: int) -> Any:
        """This rank's training batches: a ``ferrotune.StreamingLoader`` over the examples (a disjoint share per
        rank), length-bucketed unless ``--bucketing none``."""
        from ...streaming import StreamingLoader

        return StreamingLoader(
            table, tokenizer, text_pair_column="text_pair" if "text_pair" in table.column_names else None,
            label_column=self.label_column, batch_size=config.batch_size, bucketing=config.bucketing,
            **loader_options(config, rank, world),
        )  # fmt: skip

    def eval_collator(self, tokenizer: Any) -> Callable[[Any], dict]:
        """Turns encoded rows (an Arrow table) into an evaluation batch of tensors."""
        from ...collators import DataCollatorWithPadding

        collator = DataCollatorWithPadding(tokenizer)
        return lambda rows: dict(collator(rows))

    def prepare_batch(self, batch: dict, device: Any) -> dict:
        """A loader batch ready for the model, on ``device``: model inputs and labels only (flash-attention
        metadata is left out)."""
        return {key: value.to(device) for key, value in batch.items() if key in (*MODEL_INPUTS, "labels")}

    def logits(self, output: Any) -> Any:
        """The logits of a model output that :meth:`loss` and :meth:`eval_outputs` take (``output.logits``)."""
        return output.logits

    @abstractmethod
    def loss(self, logits: Any, labels: Any) -> Any:
        """The loss SUMMED over the batch (normalised later by the whole step's :meth:`loss_items`)."""

    def loss_items(self, batch: dict) -> int:
        """What the loss is normalised by: the examples of the batch."""
        return int(batch["labels"].shape[0])

    # ---- Metrics

    def eval_outputs(self, logits: Any) -> np.ndarray | None:
        """What evaluation keeps of a batch's logits for :meth:`metrics` (None: the loss is enough): one entry per
        example (the batches' entries are concatenated along the first axis)."""
        return logits.float().cpu().numpy()

    def eval_labels(self, labels: Any) -> np.ndarray:
        """What evaluation keeps of a batch's labels for :meth:`metrics`: one entry per example."""
        return labels.cpu().numpy()

    @abstractmethod
    def metrics(self, names: tuple[str, ...], loss: float, outputs: np.ndarray | None, labels: np.ndarray | None,
                label_names: list[str] | None = None) -> dict[str, float]:  # fmt: skip
        """The named metrics of the evaluation set (``outputs`` and ``labels`` in file order), without "eval_"."""

    def generation_metrics(self, accelerator: Any, model: Any, tokenizer: Any, table: Any,
                           config: TrainConfig) -> dict[str, float]:  # fmt: skip
        """Metrics of what the (unwrapped) model generates from the evaluation examples ``table`` (every process
        calls it; seq2seq: BLEU and chrF), computed after the loss, without "eval_" ({}: none)."""
        return {}

    # ---- Prediction (ferrotune.predict)

    def saved_options(self, config: TrainConfig) -> dict[str, Any]:
        """Options of the run that prediction needs, kept in ferrotune_task.json (seq2seq: the source prefix)."""
        return {}

    def predict_options(self, saved: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments of :meth:`predict` from a ferrotune_task.json (what :meth:`saved_options` kept)."""
        return {}

    def check_predicts(self) -> None:
        """Raises ConfigError when ferrotune.predict cannot serve this task (before any model is loaded)."""
        if not self.predicts:
            raise ConfigError(f"predict cannot serve {self.kind} models")

    def predict(self, model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None, *, batch_size: int,
                max_length: int | None, label_names: list[str] | None) -> list[Any]:  # fmt: skip
        """One result per text (or pair), in input order, as the task's ``pipeline`` returns it (default: the
        model's outputs of each whole text, turned into results by :meth:`predictions`)."""
        from ...prediction import predict_logits

        logits = predict_logits(model, tokenizer, texts, pairs, batch_size=batch_size, max_length=max_length)
        return self.predictions(logits, label_names)

    def predictions(self, outputs: np.ndarray, label_names: list[str] | None) -> list[dict[str, Any]]:
        """Model outputs as ``pipeline`` returns them: ``[{"label": ..., "score": ...}, ...]``."""
        self.check_predicts()  # a task predict does not serve says so
        raise NotImplementedError


def loader_options(config: TrainConfig, rank: int, world: int) -> dict[str, Any]:
    """StreamingLoader options every task's training loader shares."""
    return {
        "text_column": "text", "max_length": config.max_length, "truncation": True,
        "seed": config.seed, "shuffle": True, "rank": rank, "world_size": world,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Column checks the tasks share


def first_row(mask: Any) -> int:
    """The row of the first True of a boolean Arrow array."""
    import pyarrow.compute as pc

    return int(pc.index(mask, True).as_py())


def column(table: Any, name: str, role: str, source: Any) -> Any:
    if name not in table.column_names:
        raise ColumnNotFoundError(f"{role} column {name!r} is not in {source}; its columns are {table.column_names}")
    return table.column(name)


def text_column(table: Any, name: str, role: str, source: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    values = column(table, name, role, source)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise DataError(f"{role} column {name!r} of {source} holds {values.type}, not text")
    if values.null_count:
        raise DataError(
            f"{role} column {name!r} is empty or missing in {source.where(first_row(pc.is_null(values)))} "
            f"({values.null_count} such example(s) in {source}): fill it in or remove the example"
        )
    return values
