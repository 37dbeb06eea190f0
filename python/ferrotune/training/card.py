"""What a trained folder says about itself: a portable reference to its base model (no absolute paths) and a short
model card (README.md) in place of PEFT's template: base model, task, data, hyperparameters, metrics, how to load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .modeling import DEFAULT_MODEL_NAME, DEFAULT_MODEL_PACKAGE, hub_name, is_default_package_model
from .tasks import GLUE_TASKS

CARD_FILE = "README.md"


def base_model_reference(model_path: Path, folder: Path) -> dict[str, str]:
    """How ``folder`` names its base model: the Hub id and package of the default model, else the model folder's
    path RELATIVE to ``folder`` (valid wherever the two are moved together), plus its Hub id when known."""
    if is_default_package_model(model_path):
        return {"base_model": DEFAULT_MODEL_NAME, "base_model_package": DEFAULT_MODEL_PACKAGE}
    try:
        reference = Path(os.path.relpath(model_path.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive: no relative path exists
        reference = model_path.resolve().as_posix()
    name = hub_name(model_path)
    return {"base_model": reference, **({"base_model_name": name} if name else {})}


def _data_description(config: TrainConfig, data: Any) -> list[str]:
    preset = GLUE_TASKS.get(config.task)
    if preset and config.data_dir:
        train = f"GLUE {preset.folder} `{preset.train_file}`"
        evaluation = f"GLUE {preset.folder} `{preset.eval_file}`" if data.eval is not None else None
    else:
        train = f"`{Path(config.train).name}`" if config.train else "?"
        evaluation = f"`{Path(config.eval).name}`" if config.eval and data.eval is not None else None
    lines = [f"- training: {train}, {data.train.num_rows:,} examples"]
    if evaluation:
        lines.append(f"- evaluation: {evaluation}, {data.eval.num_rows:,} examples")
    if data.label_names:
        lines.append(f"- labels (ids in order): {', '.join(f'`{name}`' for name in data.label_names)}")
    return lines


def _hyperparameters(config: TrainConfig) -> list[str]:
    rows = [("method", f"LoRA (r {config.lora_r})" if config.use_lora else "full fine-tuning")]
    if config.use_lora:
        alpha = config.lora_alpha if config.lora_alpha is not None else 2 * config.lora_r
        rows += [("LoRA alpha / dropout", f"{alpha:g} / {config.lora_dropout:g}")]
    rows += [
        ("learning rate", f"{config.peak_learning_rate:g} (linear decay, warmup ratio {config.warmup_ratio:g})"),
        ("epochs", str(config.epochs)),
        ("batch size", f"{config.batch_size} x {config.gradient_accumulation_steps} accumulation step(s)"),
        ("weight decay", f"{config.weight_decay:g}"),
        ("max length", f"{config.max_length} tokens"),
        ("mixed precision", config.mixed_precision),
        ("seed", str(config.seed)),
    ]
    return ["| option | value |", "| --- | --- |", *(f"| {name} | {value} |" for name, value in rows)]


def _usage(config: TrainConfig, data: Any, base: str, folder_name: str) -> list[str]:
    auto = data.task.model_class
    num_labels = data.task.num_labels(data.label_names)
    head = "" if num_labels is None else f", num_labels={num_labels}"
    lines = ["```python"]
    if data.task.predicts:
        pair = ', ["its second text"]' if "text_pair" in data.train.column_names else ""
        text = "a message to answer" if data.task.chats else "a text to classify"
        lines += ["import ferrotune", "", f'ferrotune.predict("{folder_name}", ["{text}"]{pair})', ""]
        lines += ["# or with transformers" + (" and PEFT" if config.use_lora else "")]
    lines += [f"from transformers import {auto}"]
    if config.use_lora:
        lines += [
            "from peft import PeftModel", "",
            f'base = {auto}.from_pretrained("{base}"{head})',
            f'model = PeftModel.from_pretrained(base, "{folder_name}")',
        ]  # fmt: skip
    else:
        lines += ["", f'model = {auto}.from_pretrained("{folder_name}")']
    return [*lines, "```"]


def shown_folder(config: TrainConfig, best: bool) -> str:
    """The folder as the user named it (not an absolute path: the card travels with the folder)."""
    folder = Path(config.output_dir)
    if folder.is_absolute():
        folder = Path(folder.name)
    return (folder / "best" if best else folder).as_posix()


def model_card(config: TrainConfig, data: Any, reference: dict[str, str], folder: Path, *,
               metrics: dict[str, float], step: int | None, best: bool) -> str:  # fmt: skip
    """README.md of a trained folder (the output folder, or its best/ when ``best``)."""
    base = reference.get("base_model_name") or reference["base_model"]
    pipeline = data.task.pipeline_tag
    front = ["---", f"library_name: {'peft' if config.use_lora else 'transformers'}"]
    hub = reference.get("base_model_name") or (reference["base_model"] if "base_model_package" in reference else None)
    if hub:
        front.append(f"base_model: {hub}")
    front += [f"pipeline_tag: {pipeline}", "tags:", "- ferrotune", *(["- lora"] if config.use_lora else []), "---"]
    kind = config.kind if config.task == config.kind else f"{config.task} ({config.kind})"
    what = f"A LoRA adapter (rank {config.lora_r})" if config.use_lora else "A fully fine-tuned model"
    lines = [*front, "", f"# {shown_folder(config, best)}", ""]
    lines += [f"{what} for **{kind}**, trained from `{base}` with `ferrotune train`."]
    if "base_model_package" in reference:
        lines += [f"The base model is installed offline by the `{reference['base_model_package']}` package."]
    elif not reference.get("base_model_name"):
        lines += [f"The base model is the local folder `{reference['base_model']}` (relative to this folder)."]
    lines += ["", "## Data", "", *_data_description(config, data), "", "## Training", "", *_hyperparameters(config)]
    lines += ["", "## Evaluation", ""]
    if metrics:
        when = f"the best evaluation, at step {step}" if best else f"the end of training, step {step}"
        lines += [f"At {when}:", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {name.removeprefix('eval_')} | {value:.4f} |" for name, value in metrics.items()
                  if isinstance(value, float)]  # fmt: skip
    else:
        lines += ["No evaluation data was given."]
    lines += ["", "## How to use", "", *_usage(config, data, base, shown_folder(config, best)), ""]
    lines += ["`train_config.json` holds every option of the run (`ferrotune train --config train_config.json`)."]
    return "\n".join(lines) + "\n"
