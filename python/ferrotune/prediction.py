"""``ferrotune.predict``: run a folder written by ``ferrotune.train`` on texts (or pairs).

The folder holds a LoRA adapter (loaded onto its base model with PEFT) or a full model; examples are batched by
length (sorted, so almost nothing is padded) and the results come back in input order, shaped as the task's
transformers ``pipeline`` returns them: ``{"label": ..., "score": ...}`` per text for classification, a list of
entities per text for token classification, ``{"generated_text": ...}`` per conversation for a chat model (sft; the
task decides: ``Task.predict``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError, ConfigError, InvalidInputError, ModelFileNotFoundError
from .training.card import base_model_reference
from .training.loop import CONFIG_FILE, TASK_FILE
from .training.modeling import TOKENIZER_FILES, check_model_folder, load_tokenizer, quiet_transformers
from .training.tasks import task_for


def read_task(model_dir: Path) -> dict[str, Any]:
    path = model_dir / TASK_FILE
    if not path.is_file():
        raise CheckpointError(f"{model_dir} is not a ferrotune training output (no {TASK_FILE})")
    try:
        task = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise CheckpointError(f"{path} is damaged ({error}): train again, or restore it from a copy") from error
    if not isinstance(task, dict) or "kind" not in task or "base_model" not in task:
        raise CheckpointError(f"{path} is not a ferrotune task description (no 'kind' / 'base_model')")
    return task


def resolve_base_model(model_dir: str | os.PathLike[str], task: dict[str, Any] | None = None,
                       base_model: str | os.PathLike[str] | None = None) -> Path:  # fmt: skip
    """The local folder of a trained folder's base model: ``base_model`` when given; else the package that holds it
    (the default model), or the folder ``ferrotune_task.json`` names (relative to ``model_dir``, or absolute as
    older versions wrote it)."""
    model_dir = Path(model_dir)
    task = task if task is not None else read_task(model_dir)
    if base_model is not None:
        return check_model_folder(Path(base_model).expanduser())
    package = task.get("base_model_package")
    if package:
        with contextlib.suppress(ImportError):
            return check_model_folder(Path(importlib.import_module(package).get_model_path()))
    reference = Path(str(task["base_model"])).expanduser()
    folder = reference if reference.is_absolute() else model_dir / reference
    if folder.is_dir():
        return check_model_folder(folder)
    hint = f"install the package that holds it ({package.replace('_', '-')}), or " if package else ""
    raise ModelFileNotFoundError(
        f"the base model {task['base_model']!r} of {model_dir} was not found: {hint}pass its local folder "
        "(ferrotune predict --base-model DIR, or base_model=DIR)"
    )


def load_trained(model_dir: str | os.PathLike[str],
                 base_model: str | os.PathLike[str] | None = None) -> tuple[Any, Any, dict[str, Any]]:  # fmt: skip
    """(model in eval mode, tokenizer, task description) of a training output folder (``base_model``: the base
    model's folder, when it is no longer where the folder says)."""
    model_dir = Path(model_dir)
    task = read_task(model_dir)
    base_path = (
        resolve_base_model(model_dir, task, base_model) if (model_dir / "adapter_config.json").is_file() else None
    )

    import transformers

    trained = task_for(task["kind"])  # the Task: its model class and head
    trained.check_predicts()
    model_class = getattr(transformers, trained.model_class)
    with quiet_transformers():
        if (model_dir / "adapter_config.json").is_file():
            from peft import PeftModel

            base = model_class.from_pretrained(base_path, **trained.model_options(task["label_names"]))
            model = PeftModel.from_pretrained(base, model_dir)
        else:
            model = model_class.from_pretrained(model_dir)
    return model.eval(), load_tokenizer(model_dir), task


def predict_logits(model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None, *, batch_size: int = 64,
                   max_length: int | None = 512) -> np.ndarray:  # fmt: skip
    """Model outputs for every input, in input order, computed on length-sorted batches."""
    import torch

    if pairs is not None and len(pairs) != len(texts):
        raise InvalidInputError(f"{len(texts)} texts but {len(pairs)} text pairs")
    if not texts:
        return np.zeros((0, model.config.num_labels), dtype=np.float32)
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    outputs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            features = [{key: encoded[key][i] for key in encoded.keys()} for i in chosen]
            batch = tokenizer.pad(features, return_tensors="pt")
            outputs[chosen] = model(**batch).logits.float().numpy()
    return outputs


def predict(model_dir: str | os.PathLike[str], texts: str | list[Any], text_pairs: str | list[str] | None = None, *,
            batch_size: int = 64, max_length: int | None = None, base_model: str | os.PathLike[str] | None = None,
            generate_kwargs: dict[str, Any] | None = None) -> list[Any]:  # fmt: skip
    """For each text (or pair), what the task's ``pipeline`` returns: ``{"label": ..., "score": ...}`` for
    classification and regression; for token classification (NER) the list of entities of
    ``pipeline("ner", aggregation_strategy="simple")`` (``entity_group``, ``score``, ``word``, ``start``, ``end``);
    for seq2seq ``{"generated_text": ...}`` as ``pipeline("text2text-generation")`` (the training's source prefix
    put first); for a chat model (sft) ``texts`` are conversations (lists of ``{"role", "content"}`` messages, or
    texts: one user message each) and each gives ``{"generated_text": ...}``, the assistant's reply (greedy,
    ``max_new_tokens=256``; ``generate_kwargs``: ``model.generate``'s options, ``temperature`` > 0 samples).

    ``max_length`` defaults to the one the model was trained with (NER: texts longer than that are read in
    overlapping windows, not cut)."""
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(text_pairs, str):
        text_pairs = [text_pairs]
    if generate_kwargs is not None and not task_for(read_task(Path(model_dir))["kind"]).chats:
        raise ConfigError("generate_kwargs is for chat models (sft): this folder's task does not take them")
    model, tokenizer, task = load_trained(model_dir, base_model)
    trained = task_for(task["kind"])
    options = trained.predict_options(task)
    if generate_kwargs is not None:
        options["generate_kwargs"] = generate_kwargs
    return trained.predict(
        model, tokenizer, list(texts), None if text_pairs is None else list(text_pairs), batch_size=batch_size,
        max_length=max_length or task.get("max_length", 512), label_names=task["label_names"], **options,
    )  # fmt: skip


def merge(model_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str],
          base_model: str | os.PathLike[str] | None = None) -> Path:  # fmt: skip
    """Folds a LoRA adapter into its base model (PEFT's merge_and_unload) and writes a standalone model folder."""
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if (model_dir / TASK_FILE).is_file() and not (model_dir / "adapter_config.json").is_file():
        raise ConfigError(f"{model_dir} holds a full model already: nothing to merge")
    model, _, task = load_trained(model_dir, base_model)
    # The merged folder names the base model relative to itself (the adapter folder's reference was relative to it).
    task = {key: value for key, value in task.items() if not key.startswith("base_model")}
    task.update(base_model_reference(resolve_base_model(model_dir, read_task(model_dir), base_model), output_dir))
    merged = model.merge_and_unload()
    output_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output_dir, safe_serialization=True)
    for name in (*TOKENIZER_FILES, CONFIG_FILE):
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, output_dir / name)
    (output_dir / TASK_FILE).write_text(json.dumps({**task, "lora": False}, indent=2) + "\n")
    return output_dir
