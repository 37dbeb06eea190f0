"""Sequence-to-sequence fine-tuning (translation, summarization): an encoder-decoder model (T5, mT5, mt0, BART,
Marian, ...: ``AutoModelForSeq2SeqLM``, PEFT's ``SEQ_2_SEQ_LM``) learns to write the target text of a source text.
The Hugging Face course's chapter 7 section 4 ("Translation"), and PEFT's mt0 LoRA example.

Data: one source column (``--text-column``, default ``source``) and one target column (``--target-column``, default
``target``) of JSONL / Parquet / Arrow / CSV / TSV files (a TSV without a header row, such as Tatoeba's
``English<TAB>French`` lines, takes ``--column-names source,target``). ``--source-prefix`` is put before every source
("translate English to French: " for T5; nothing for mt0/BART) and kept in ``ferrotune_task.json`` for predict.

Preprocessing is the course's ``tokenizer(inputs, text_target=targets, max_length=..., truncation=True)``, with the
targets' own ``--max-target-length``. Batches are ``DataCollatorForSeq2Seq(tokenizer, model=model)``'s: inputs padded
by the tokenizer, labels padded with -100, and ``decoder_input_ids`` = the labels shifted right behind the model's
``decoder_start_token_id`` (-100 read as padding), what ``prepare_decoder_input_ids_from_labels`` gives for T5 and
BART (:class:`DecoderInputs`, built from the model folder's config). Training batches come from a
:class:`~ferrotune.StreamingLoader` with ``target_column`` (the same tokenization and batches, in Rust; exactly
resumable), length-bucketed by the longer of source and target unless ``--bucketing none``.

The loss is the cross-entropy over the label tokens (mean over them). Evaluation: the loss, then (unless
``--generation-max-length 0``) the model's ``generate`` on every source (greedy, or beam search with
``--num-beams``), scored against the references with sacreBLEU's corpus BLEU and chrF (main metric: bleu; without
generation, eval loss); the generated texts go to ``eval_predictions.jsonl`` in the output folder (the last
evaluation's). ``ferrotune predict`` generates as ``pipeline("text2text-generation")``: ``{"generated_text": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from .base import Task, first_row, loader_options, text_column

SEQ2SEQ = "seq2seq"
IGNORED = -100  # labels the loss ignores (transformers' convention)
PREDICTIONS_FILE = "eval_predictions.jsonl"


class Seq2Seq(Task):
    kind = SEQ2SEQ
    model_class = "AutoModelForSeq2SeqLM"
    peft_task_type = "SEQ_2_SEQ_LM"
    pipeline_tag = "text2text-generation"
    label_column = None  # the labels are the target's tokens
    generates = True

    def check_config(self, config: Any) -> None:
        if config.packing:
            raise ConfigError("packing is for causal-lm only: a seq2seq example is one source and one target")
        super().check_config(config)
        for name in ("text_pair_column", "label_column", "label_names"):
            if getattr(config, name):
                raise ConfigError(
                    f"seq2seq reads a source column (--text-column) and a target column (--target-column): {name} "
                    "does not apply"
                )
        for name in ("max_target_length", "num_beams"):
            value = getattr(config, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        value = config.generation_max_length
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"generation_max_length must be a non-negative integer (0: no generation), got {value!r}")
        check_seq2seq_model(config)

    # ---- Columns and rows

    def columns(self, config: Any, preset: Any) -> dict[str, str]:
        return {"source": config.text_column or "source", "target": config.target_column or "target"}

    def rows(self, table: Any, columns: dict[str, str], source: Any,
             label_names: list[str] | None) -> tuple[Any, list[str] | None]:  # fmt: skip
        """``text`` (the sources) and ``target``: text, neither missing nor blank."""
        import pyarrow as pa
        import pyarrow.compute as pc

        examples = {}
        for role, name in (("source", "text"), ("target", "target")):
            values = text_column(table, columns[role], role, source)
            blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0)
            if pc.any(blank).as_py():
                raise DataError(
                    f"{role} column {columns[role]!r} is empty in {source.where(first_row(blank))} "
                    f"({pc.sum(blank).as_py()} such example(s) in {source}): fill it in or remove the example"
                )
            examples[name] = values
        return pa.table(examples), label_names

    def default_metrics(self, label_names: list[str] | None) -> tuple[tuple[str, ...], str]:
        return ("bleu", "chrf"), "bleu"

    def run_metrics(self, config: Any, label_names: list[str] | None) -> tuple[tuple[str, ...], str]:
        """BLEU and chrF of generated texts; nothing but the loss with ``--generation-max-length 0``."""
        return self.default_metrics(label_names) if config.generation_max_length else ((), "loss")

    # ---- Batches and loss

    def encode(self, tokenizer: Any, table: Any, max_length: int, config: Any = None) -> Any:
        """The course's ``tokenizer(prefix + sources, text_target=targets, max_length=..., truncation=True)``, the
        targets cut at ``--max-target-length``: ``input_ids``, ``attention_mask``, ``labels``."""
        import pyarrow as pa

        prefix = (config.source_prefix if config is not None else None) or ""
        target_length = config.max_target_length if config is not None else max_length
        sources = [prefix + text for text in table.column("text").to_pylist()]
        encoded = tokenizer(sources, truncation=True, max_length=max_length, return_tensors="arrow")
        targets = tokenizer(text_target=table.column("target").to_pylist(), truncation=True,
                            max_length=target_length, return_tensors="arrow")  # fmt: skip
        columns = {name: encoded.column(name) for name in encoded.schema.names}
        columns["labels"] = targets.column("input_ids")
        return pa.table(columns)

    def train_loader(self, config: Any, tokenizer: Any, table: Any, rank: int, world: int) -> Any:
        """A ``StreamingLoader`` over the (prefixed) sources and their targets: :meth:`encode`'s tokenization and
        :meth:`eval_collator`'s batches (labels padded with -100, the model's decoder inputs), reshuffled each
        epoch, length-bucketed unless ``--bucketing none``, this rank's share."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from ...streaming import StreamingLoader

        prefix = config.source_prefix or ""
        sources = table.column("text")
        if prefix:
            sources = pc.binary_join_element_wise(pa.scalar(prefix), sources, "")
        pairs = pa.table({"text": sources, "target": table.column("target")})
        return StreamingLoader(
            pairs, tokenizer, target_column="target", max_target_length=config.max_target_length,
            model=DecoderInputs.of_folder(tokenizer.name_or_path), batch_size=config.batch_size,
            bucketing=config.bucketing, **loader_options(config, rank, world),
        )  # fmt: skip

    def eval_collator(self, tokenizer: Any) -> Callable[[Any], dict]:
        """``DataCollatorForSeq2Seq(tokenizer, model=model)``: the decoder inputs from the model folder's config (the
        folder the tokenizer was loaded from, as training loads it)."""
        from ...collators import DataCollatorForSeq2Seq

        collator = DataCollatorForSeq2Seq(tokenizer, model=DecoderInputs.of_folder(tokenizer.name_or_path),
                                          label_pad_token_id=IGNORED)  # fmt: skip
        return lambda rows: dict(collator(rows))

    def loss(self, logits: Any, labels: Any) -> Any:
        import torch.nn.functional as F

        logits = logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORED,
                               reduction="sum")  # fmt: skip

    def loss_items(self, batch: dict) -> int:
        """The label tokens."""
        return int((batch["labels"] != IGNORED).sum())

    # ---- Metrics

    def eval_outputs(self, logits: Any) -> np.ndarray | None:
        return None  # the metrics score generated texts (generation_metrics), not the logits

    def metrics(self, names: tuple[str, ...], loss: float, outputs: np.ndarray | None, labels: np.ndarray | None,
                label_names: list[str] | None = None) -> dict[str, float]:  # fmt: skip
        return {}

    def generation_metrics(self, accelerator: Any, model: Any, tokenizer: Any, table: Any,
                           config: Any) -> dict[str, float]:  # fmt: skip
        """BLEU and chrF (sacreBLEU, corpus level, 0-100) of the texts the model generates from the evaluation
        sources, against their targets; each process generates its share. The texts are written to
        ``eval_predictions.jsonl`` (source, reference, prediction per line, in file order)."""
        if not config.generation_max_length or table is None:
            return {}
        from accelerate.utils import gather_object

        rank, world = accelerator.process_index, accelerator.num_processes
        sources, references = table.column("text").to_pylist(), table.column("target").to_pylist()
        order = np.arange(len(sources))[rank::world]
        generated = generate(
            model, tokenizer, [sources[i] for i in order], prefix=config.source_prefix or "",
            batch_size=config.eval_batch_size, max_length=config.max_length,
            generation_max_length=config.generation_max_length, num_beams=config.num_beams,
        )  # fmt: skip
        pairs = list(zip(order.tolist(), generated))
        if world > 1:
            pairs = gather_object(pairs)
        predictions = [text for _, text in sorted(pairs)]
        scores = corpus_scores(predictions, references)
        if accelerator.is_main_process:
            path = Path(config.output_dir) / PREDICTIONS_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as handle:
                for source, reference, prediction in zip(sources, references, predictions):
                    line = {"source": source, "reference": reference, "prediction": prediction}
                    handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        return scores

    # ---- Prediction

    def saved_options(self, config: Any) -> dict[str, Any]:
        return {"source_prefix": config.source_prefix or "", "num_beams": config.num_beams,
                "generation_max_length": config.generation_max_length or 128}  # fmt: skip

    def predict_options(self, saved: dict[str, Any]) -> dict[str, Any]:
        return {key: saved[key] for key in ("source_prefix", "num_beams", "generation_max_length") if key in saved}

    def predict(self, model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None, *, batch_size: int,
                max_length: int | None, label_names: list[str] | None, source_prefix: str = "", num_beams: int = 1,
                generation_max_length: int = 128) -> list[Any]:  # fmt: skip
        """``{"generated_text": ...}`` per text, as ``pipeline("text2text-generation")`` returns it (the training's
        source prefix put first)."""
        if pairs is not None:
            raise ConfigError("seq2seq generates from one source text: it takes no text pairs")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ConfigError(f"text {i} is {type(text).__name__}, not a string")
        generated = generate(model, tokenizer, texts, prefix=source_prefix, batch_size=batch_size,
                             max_length=max_length or 512, generation_max_length=generation_max_length,
                             num_beams=num_beams)  # fmt: skip
        return [{"generated_text": text} for text in generated]


# --------------------------------------------------------------------------------------------------
# The model


# Model types of AutoModelForSeq2SeqLM whose config.json may lack "is_encoder_decoder" (their config class sets it).
ENCODER_DECODER_TYPES = frozenset({
    "t5", "mt5", "umt5", "longt5", "switch_transformers", "bart", "mbart", "marian", "pegasus", "pegasus_x",
    "m2m_100", "nllb-moe", "led", "blenderbot", "blenderbot-small", "plbart", "fsmt", "prophetnet", "bigbird_pegasus",
    "encoder-decoder", "seamless_m4t", "seamless_m4t_v2",
})  # fmt: skip


def check_seq2seq_model(config: Any) -> None:
    """The model folder must hold an encoder-decoder model that ``AutoModelForSeq2SeqLM`` loads (read from its
    config.json alone, without importing transformers: "is_encoder_decoder", or a known model type; a missing folder
    or file is reported later, by the model folder checks)."""
    if not config.model:
        raise ConfigError(
            "seq2seq needs --model: a local encoder-decoder model folder (T5, mT5, mt0, BART, Marian, ...); the "
            "default model is an encoder only"
        )
    path = Path(config.model).expanduser() / "config.json"
    if not path.is_file():
        return
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        model_type, encoder_decoder = values.get("model_type"), values.get("is_encoder_decoder")
    except (OSError, ValueError, AttributeError):
        return
    if not encoder_decoder and model_type not in ENCODER_DECODER_TYPES:
        raise ConfigError(
            f"{config.model} holds a {model_type!r} model, not an encoder-decoder (seq2seq) model: --task seq2seq "
            "trains AutoModelForSeq2SeqLM models (T5, mT5, mt0, BART, Marian, ...)"
        )


class DecoderInputs:
    """The ``model=`` of ``DataCollatorForSeq2Seq`` without the model: ``prepare_decoder_input_ids_from_labels``
    as T5's ``_shift_right`` and BART's ``shift_tokens_right`` compute it (the labels shifted one to the right,
    ``decoder_start_token_id`` first, -100 replaced by the pad id)."""

    def __init__(self, decoder_start_token_id: int, pad_token_id: int) -> None:
        self.decoder_start_token_id, self.pad_token_id = int(decoder_start_token_id), int(pad_token_id)

    @classmethod
    def of_folder(cls, folder: str | Path) -> DecoderInputs:
        from transformers import AutoConfig

        if not folder or not (Path(folder) / "config.json").is_file():
            raise ConfigError(f"no model config.json in {folder!r}: the decoder's start token is unknown")
        config = AutoConfig.from_pretrained(folder)
        start = config.decoder_start_token_id
        if start is None:
            raise ConfigError(f"the model of {folder} has no decoder_start_token_id: it is not a seq2seq model")
        return cls(start, config.pad_token_id if config.pad_token_id is not None else 0)

    def prepare_decoder_input_ids_from_labels(self, labels: Any) -> Any:
        shifted = labels.new_zeros(labels.shape)
        shifted[..., 1:] = labels[..., :-1].clone()
        shifted[..., 0] = self.decoder_start_token_id
        return shifted.masked_fill(shifted == IGNORED, self.pad_token_id)


# --------------------------------------------------------------------------------------------------
# Generation and scores


def generate(model: Any, tokenizer: Any, texts: list[str], *, prefix: str = "", batch_size: int = 64,
             max_length: int = 512, generation_max_length: int = 128, num_beams: int = 1) -> list[str]:  # fmt: skip
    """The model's ``generate`` on every text (prefixed, truncated to ``max_length`` tokens), on length-sorted
    batches: the decoded texts (special tokens skipped, stripped), in input order. ``model``: the transformers
    model, or the PeftModel around it."""
    import torch

    if not texts:
        return []
    device = next(model.parameters()).device
    encoded = tokenizer([prefix + text for text in texts], truncation=True, max_length=max_length)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    results: list[str] = [""] * len(texts)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                features = [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i]}
                            for i in chosen]  # fmt: skip
                batch = {k: v.to(device) for k, v in tokenizer.pad(features, return_tensors="pt").items()}
                output = model.generate(**batch, max_length=generation_max_length, num_beams=num_beams,
                                        do_sample=False)  # fmt: skip
                for i, text in zip(chosen, tokenizer.batch_decode(output, skip_special_tokens=True)):
                    results[i] = text.strip()
    finally:
        model.train(training)
    return results


def corpus_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """sacreBLEU's corpus BLEU and chrF (0-100; one reference per example), as the course's
    ``evaluate.load("sacrebleu")`` computes BLEU."""
    try:
        import sacrebleu
    except ImportError as error:  # pragma: no cover - a dependency of the train extra
        raise ConfigError("seq2seq evaluation needs sacrebleu: pip install sacrebleu") from error
    references = [reference.strip() for reference in references]
    return {
        "bleu": float(sacrebleu.corpus_bleu(predictions, [references]).score),
        "chrf": float(sacrebleu.corpus_chrf(predictions, [references]).score),
    }
