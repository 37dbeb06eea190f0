"""``ferrotune.train``: an Accelerate training loop (in the spirit of Accelerate's nlp_example.py and nanoGPT's
train.py), fed by ferrotune's tokenizer and collators. Read it top to bottom: setup, then one loop over optimizer
steps, evaluation and checkpoints along the way, the trained model written at the end."""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import itertools
import json
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError
from . import checkpoint as ckpt
from .card import CARD_FILE, base_model_reference, model_card
from .config import TrainConfig
from .data import TaskData, batch_tokens, build_eval_batches, load_task_data, model_inputs
from .metrics import is_better
from .modeling import (
    TOKENIZER_FILES,
    build_model,
    check_model_folder,
    load_tokenizer,
    model_display_name,
    parameter_counts,
    quiet_transformers,
)
from .report import METRICS_FILE, RunLog, plot_metrics, read_metrics
from .tasks import Task

TASK_FILE = "ferrotune_task.json"  # what predict needs besides the weights: task kind, labels, base model
CONFIG_FILE = "train_config.json"  # the config used (accepted back by --config)


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    status: str  # "finished", "stopped" (stop_after_steps) or "interrupted" (Ctrl-C)
    eval_metrics: dict[str, float] = field(default_factory=dict)  # of the last evaluation
    best_metric: float | None = None
    best_step: int | None = None
    checkpoint: Path | None = None  # the last checkpoint written
    train_seconds: float = 0.0
    main_process: bool = True  # False on the other ranks of a multi-process run
    dropped: dict[str, int] = field(default_factory=dict)  # examples left out ("train", "eval"; sft --drop-empty)


def as_config(config: TrainConfig | dict | str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    if config is None:
        config = TrainConfig()
    elif isinstance(config, (str, Path)):
        config = TrainConfig.from_file(config)
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    elif not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig, a dict or a config file path, not {type(config).__name__}")
    if overrides or any(isinstance(v, os.PathLike) for v in config.to_dict().values()):
        config = TrainConfig.from_dict({**config.to_dict(), **overrides})
    return config.validate()


# --------------------------------------------------------------------------------------------------
# Loss and evaluation


def summed_loss(model: Any, batch: dict, task: Task) -> Any:
    """The loss SUMMED over the batch's examples (tokens for causal LM): normalised later by the whole step's count."""
    return task.loss(task.logits(model(**model_inputs(batch))), batch["labels"])


def evaluate(accelerator: Any, model: Any, eval_batches: list, data: TaskData, tokenizer: Any = None,
             config: TrainConfig | None = None) -> dict[str, float]:  # fmt: skip
    """Metrics over the whole evaluation set (each process evaluates its share; results are gathered), then those
    of what the model generates (``Task.generation_metrics``, given the tokenizer and config)."""
    import torch
    from accelerate.utils import gather_object

    task = data.task
    # The unwrapped model: DDP's forward syncs buffers collectively, and ranks may hold different batch counts here.
    model = accelerator.unwrap_model(model)
    model.eval()
    local = []
    with torch.no_grad():
        for indices, batch in eval_batches:
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            logits = task.logits(model(**model_inputs(batch)))
            loss = task.loss(logits, batch["labels"]).item()
            kept = task.eval_outputs(logits)  # what the metrics need of the logits (None: the loss is enough)
            labels = None if kept is None else task.eval_labels(batch["labels"])
            local.append((indices, loss, task.loss_items(batch), kept, labels))
    generated = {} if config is None else task.generation_metrics(accelerator, model, tokenizer, data.eval, config)
    model.train()
    gathered = gather_object(local) if accelerator.num_processes > 1 else local
    total_loss, total_items = sum(g[1] for g in gathered), sum(g[2] for g in gathered)
    results = {"eval_loss": total_loss / max(total_items, 1)}
    outputs = labels = None
    with_outputs = [g for g in gathered if g[3] is not None]
    if with_outputs:
        order = np.argsort(np.concatenate([g[0] for g in with_outputs]), kind="stable")  # back to file order
        outputs = np.concatenate([g[3] for g in with_outputs])[order]
        labels = np.concatenate([g[4] for g in with_outputs])[order]
    metrics = task.metrics(data.metrics, results["eval_loss"], outputs, labels, data.label_names)
    results.update({f"eval_{k}": v for k, v in {**metrics, **generated}.items()})
    return results


# --------------------------------------------------------------------------------------------------
# Optimizer and schedule


def build_optimizer(model: Any, config: TrainConfig) -> Any:
    import torch

    # No weight decay on biases and LayerNorm weights (as transformers' Trainer).
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.peak_learning_rate)


def linear_schedule(optimizer: Any, warmup_steps: int, total_steps: int) -> Any:
    """Linear warmup from 0 to the peak learning rate, then linear decay to 0 (transformers' "linear")."""
    import torch

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------------------------------------
# Output


@contextlib.contextmanager
def deferred_interrupt():
    """Ctrl-C inside the block takes effect (KeyboardInterrupt) when the block ends, not in the middle of it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if received:
            raise KeyboardInterrupt


# What save_model writes (deleted by --overwrite-output-dir along with the run's checkpoints and metrics).
MODEL_FILES = (
    "adapter_model.safetensors", "adapter_config.json", "model.safetensors", "model.safetensors.index.json",
    "pytorch_model.bin", "config.json", "generation_config.json", CARD_FILE, *TOKENIZER_FILES,
)  # fmt: skip


def save_model(accelerator: Any, model: Any, folder: Path, model_path: Path, config: TrainConfig, data: TaskData, *,
               metrics: dict[str, float] | None = None, step: int | None = None,
               best: bool = False) -> None:  # fmt: skip
    """The adapter (or full model), tokenizer files, the config used, the task description and a model card; the
    base model is named portably (its Hub id / package, or its path relative to ``folder``)."""
    if not accelerator.is_main_process:
        return
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():  # no "Writing model shards" bar after the run's own
        accelerator.unwrap_model(model).save_pretrained(folder, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (model_path / name).is_file():
            shutil.copyfile(model_path / name, folder / name)
    if getattr(config, "chat_template", None):  # the template trained with: what chat and transformers load first
        shutil.copyfile(Path(config.chat_template).expanduser(), folder / "chat_template.jinja")
    (folder / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    reference = base_model_reference(model_path, folder)
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():  # PEFT records the absolute path the base model was loaded from
        values = json.loads(adapter_config.read_text(encoding="utf-8"))
        values["base_model_name_or_path"] = reference.get("base_model_name") or reference["base_model"]
        adapter_config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    card = model_card(config, data, reference, folder, metrics=metrics or {}, step=step, best=best)
    (folder / CARD_FILE).write_text(card, encoding="utf-8")
    task = {
        "kind": data.kind, "label_names": data.label_names, "metrics": list(data.metrics), **reference,
        "lora": config.use_lora, "max_length": config.max_length, **data.task.saved_options(config),
    }  # fmt: skip
    # Written last: a folder with ferrotune_task.json holds a complete model (a run killed while saving does not).
    (folder / TASK_FILE).write_text(json.dumps(task, indent=2) + "\n")


# --------------------------------------------------------------------------------------------------
# The run


def check_not_fsdp() -> None:
    """Refuses a launch with Accelerate's FSDP (``distributed_type: FSDP``, which sets ``ACCELERATE_USE_FSDP``): the
    model is saved, checkpointed and evaluated through the unwrapped model on the main process, which sharded FSDP
    parameters do not allow (the run would train, then fail or hang while writing its model)."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        raise ConfigError(
            "FSDP is not supported by ferrotune train (the adapter and checkpoints are written from the unwrapped "
            "model on the main process, which FSDP's sharded parameters do not allow): launch with DDP instead, "
            "accelerate launch --multi_gpu --num_processes N -m ferrotune train ..."
        )


def train(config: TrainConfig | dict | str | Path | None = None, **overrides: Any) -> TrainResult:
    """Fine-tunes a model as ``config`` says (a TrainConfig, a dict, a YAML/JSON file; keyword overrides win).

    Every input problem raises a ferrotune error before training starts. Ctrl-C saves a checkpoint and returns
    a result with status "interrupted"; ``resume`` continues from a checkpoint exactly."""
    # ---- Setup: check everything first (config, data, model files, output folder, resume checkpoint), before the
    # slow imports of torch, transformers and peft: a wrong path or column is reported at once.
    config = as_config(config, overrides)
    check_not_fsdp()
    data = load_task_data(config)
    model_path = check_model_folder(config.model_path())
    output_dir = Path(config.output_dir)
    metric_for_best = (config.metric_for_best or data.main_metric).removeprefix("eval_")
    if metric_for_best not in (*data.metrics, "loss"):
        raise ConfigError(f"metric_for_best {metric_for_best!r} is not one of {[*data.metrics, 'loss']}")
    ckpt.check_output_dir(config)
    resume_from = ckpt.resolve_resume(config)
    history: list[dict[str, Any]] = []
    if resume_from is not None:
        # The records so far: this folder's, or those of the run the checkpoint comes from (resuming elsewhere).
        run_folder = output_dir if ckpt.inside(resume_from, output_dir) else resume_from.parent.parent
        history = read_metrics(run_folder / METRICS_FILE)

    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("mixed_precision fp16 needs a GPU; on CPU use 'bf16' or 'no'")

    # cpu=True without a GPU: under torchrun / accelerate launch, processes then meet over gloo (MULTI_CPU).
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        cpu=not torch.cuda.is_available(),
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    set_seed(config.seed)  # Python, NumPy and torch: the new head's initialisation, LoRA's, dropout

    tokenizer = load_tokenizer(model_path)
    task = data.task  # what differs between kinds of training: model class, batches, loss, metrics
    model = build_model(config, task, model_path, data.label_names, tokenizer)
    train_loader = task.train_loader(config, tokenizer, data.train, rank, world)
    eval_batches = build_eval_batches(config, task, tokenizer, data.eval, rank, world) if data.eval is not None else []

    # Optimizer steps per epoch: every process must take the same number (DDP syncs at each), so each epoch stops
    # at the smallest batch count over the processes (packed batches can differ by one or two between ranks).
    accumulation = config.gradient_accumulation_steps
    batch_counts = torch.tensor([train_loader.count_batches(e) for e in range(config.epochs)])
    batch_counts = accelerator.gather(batch_counts.to(accelerator.device)).view(world, -1).min(dim=0).values.tolist()
    epoch_steps = [math.ceil(count / accumulation) for count in batch_counts]
    if min(epoch_steps) == 0:
        raise ConfigError(f"not one batch of {config.batch_size} per process: use more data or a smaller batch")
    epoch_ends = list(itertools.accumulate(epoch_steps))  # the step that ends each epoch
    total_steps = epoch_ends[-1]
    optimizer = build_optimizer(model, config)
    scheduler = linear_schedule(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    # Not prepared: the scheduler steps once per optimizer step, and the loader already shards by rank.

    step, best_metric, best_step, last_eval, last_checkpoint = 0, None, None, {}, None
    if resume_from is not None:
        shared, own = ckpt.load_shared(resume_from), ckpt.load_rank(resume_from, rank)
        if shared["step"] >= total_steps and ckpt.model_written(resume_from):  # (older checkpoints lack total_steps)
            ckpt.raise_finished(resume_from, shared["step"], total_steps)
        # strict=False: the checkpoint holds the trainable weights only; each of them must find its parameter.
        unexpected = accelerator.unwrap_model(model).load_state_dict(shared["model"], strict=False).unexpected_keys
        if unexpected:
            raise CheckpointError(f"checkpoint {resume_from} holds weights this model lacks: {unexpected[:3]}")
        optimizer.load_state_dict(shared["optimizer"])
        scheduler.load_state_dict(shared["scheduler"])
        step, best_metric, best_step = shared["step"], shared["best_metric"], shared["best_step"]
        train_loader.load_state_dict(own["loader"])
        ckpt.restore_rng(own["rng"])
        last_checkpoint = resume_from
        # The last evaluation so far: the final model's card and the result report it if no other follows.
        evals = [r for r in history if r.get("type") == "eval" and r.get("step", 0) <= step]
        last_eval = {k: v for k, v in (evals[-1] if evals else {}).items() if k.startswith("eval_")}

    if accelerator.is_main_process:
        if config.overwrite_output_dir:
            ckpt.clear_previous_run(output_dir, MODEL_FILES)
        elif resume_from is not None and ckpt.inside(resume_from, output_dir / "checkpoints"):
            # Checkpoints after the one resumed from belong to the timeline being replaced: --resume latest must
            # never pick them (the first checkpoint this run writes prunes them too).
            for later in ckpt.list_checkpoints(resume_from.parent, complete_only=False):
                if (ckpt.checkpoint_step(later) or 0) > step:
                    shutil.rmtree(later, ignore_errors=True)
    accelerator.wait_for_everyone()
    # Written into train_config.json and the checkpoints as False: a rerun with --config must not delete anything.
    config = dataclasses.replace(config, overwrite_output_dir=False)

    log = RunLog(output_dir, config.log, accelerator.is_main_process, total_steps, resume_step=step, history=history)
    trainable, total = parameter_counts(model)
    log.message(
        f"{data.kind} on {model_display_name(model_path)}: {trainable:,} of {total:,} parameters trainable, "
        f"{world} process(es), "
        f"{epoch_steps[0]} steps/epoch x {config.epochs} epochs" + (f", resumed at step {step}" if step else "")
    )
    if data.dropped:
        log.message("left out (no token to learn, --drop-empty): "
                    + ", ".join(f"{n} {split} example(s)" for split, n in data.dropped.items()))  # fmt: skip

    def eval_due(at: int) -> bool:
        periodic = bool(config.eval_every and at % config.eval_every == 0)
        return data.eval is not None and at > 0 and (at in epoch_ends or periodic)

    def epoch_at(at: int) -> float:
        epoch = bisect.bisect_left(epoch_ends, at)
        return epoch + (at - (epoch_ends[epoch] - epoch_steps[epoch])) / epoch_steps[epoch]

    def checkpoint_now(rng_state: dict, loader_state: dict) -> Path:
        folder = ckpt.checkpoint_dir(output_dir, step)
        shared = {
            "model": ckpt.trainable_state(accelerator.unwrap_model(model)),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": step, "best_metric": best_metric, "best_step": best_step, "config": config.to_dict(),
            "total_steps": total_steps,
            # Ctrl-C during this step's evaluation: the resumed run evaluates first, so no evaluation is lost.
            "eval_pending": eval_due(step) and evaluated_step != step,
        }  # fmt: skip
        ckpt.save_checkpoint(accelerator, folder, shared=shared, per_rank={"rng": rng_state, "loader": loader_state})
        return folder

    evaluated_step = step if resume_from is None or not shared.get("eval_pending") else None

    def evaluate_now(epoch: float) -> None:
        nonlocal best_metric, best_step, last_eval, evaluated_step
        if not eval_batches and data.eval is None:
            return
        last_eval = evaluate(accelerator, model, eval_batches, data, tokenizer, config)
        value = last_eval[f"eval_{metric_for_best}"]
        improved = is_better(metric_for_best, value, best_metric)
        if improved:
            save_model(accelerator, model, output_dir / "best", model_path, config, data, metrics=last_eval, step=step,
                       best=True)  # fmt: skip
            best_metric, best_step = value, step  # only once best/ is written whole (Ctrl-C may come while saving)
        with deferred_interrupt():
            log.write({"type": "eval", "step": step, "epoch": round(epoch, 4), **last_eval, "best": improved})
            evaluated_step = step

    # ---- The loop: one iteration per optimizer step (a window of `accumulation` micro-batches)
    model.train()
    status, start_time = "finished", time.perf_counter()
    rng_at_step, loader_at_step = ckpt.capture_rng(), train_loader.state_dict()
    try:
        if evaluated_step != step:  # resumed from a Ctrl-C during an evaluation: do it now
            evaluate_now(epoch_at(step))
        if step >= total_steps:
            log.message(f"training had finished at step {step} but the model was not written whole: writing it now")
        while step < total_steps:
            epoch = bisect.bisect_right(epoch_ends, step)
            epoch_start = epoch_ends[epoch] - epoch_steps[epoch]
            train_loader.set_epoch(epoch)
            batches = iter(train_loader)
            while step < epoch_ends[epoch]:
                step_start = time.perf_counter()
                # The epoch's last step may have fewer micro-batches; batches beyond the common count are skipped.
                remaining = batch_counts[epoch] - (step - epoch_start) * accumulation
                window = list(itertools.islice(batches, min(accumulation, remaining)))
                data_seconds = time.perf_counter() - step_start  # the wait for the loader's batches
                window = [task.prepare_batch(b, accelerator.device) for b in window]
                # Normalise by the real count of the whole step (all micro-batches, all processes): the gradient
                # is then that of the mean over every example/token, whatever the batch composition.
                real, padded = zip(*(batch_tokens(b) for b in window))
                items = sum(task.loss_items(b) for b in window)
                counts = torch.tensor([items, sum(real), sum(padded)], device=accelerator.device)
                items, real_tokens, padded_tokens = accelerator.reduce(counts, reduction="sum").tolist()
                # accelerator.backward divides by the accumulation steps and DDP averages over processes: undo both.
                scale = accumulation * world / max(items, 1)
                step_loss = torch.zeros((), device=accelerator.device)
                for i, batch in enumerate(window):
                    last = i == len(window) - 1
                    with contextlib.nullcontext() if last else accelerator.no_sync(model):
                        loss = summed_loss(model, batch, task)
                        accelerator.backward(loss * scale)
                    step_loss += loss.detach()
                grad_norm = None
                if config.max_grad_norm > 0:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                learning_rate = scheduler.get_last_lr()[0]
                loss_value = accelerator.reduce(step_loss, reduction="sum").item() / max(items, 1)
                # From the update to the step's record: a Ctrl-C here waits for the block's end, so a checkpoint
                # never pairs updated weights with the previous step's counter, loader position or RNG states.
                with deferred_interrupt():
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    rng_at_step, loader_at_step = ckpt.capture_rng(), train_loader.state_dict()
                    elapsed = time.perf_counter() - step_start
                    stopping = config.stop_after_steps is not None and step >= config.stop_after_steps
                    log.write({
                        "type": "train", "step": step,
                        "epoch": round(epoch + (step - epoch_start) / epoch_steps[epoch], 4), "loss": loss_value,
                        "lr": learning_rate, "grad_norm": None if grad_norm is None else float(grad_norm),
                        "tokens_per_s": real_tokens / elapsed, "pad_fraction": 1 - real_tokens / max(padded_tokens, 1),
                        "real_tokens": int(real_tokens), "seconds": elapsed, "data_seconds": data_seconds,
                    }, last=stopping)  # fmt: skip

                end_of_epoch = step == epoch_ends[epoch]
                if eval_due(step):
                    evaluate_now(epoch + (step - epoch_start) / epoch_steps[epoch])
                if end_of_epoch or stopping or (config.save_every and step % config.save_every == 0):
                    last_checkpoint = checkpoint_now(rng_at_step, loader_at_step)
                if stopping and step < total_steps:
                    status = "stopped"
                    break
            if status == "stopped":
                break
    except KeyboardInterrupt:
        status = "interrupted"
        already = ckpt.checkpoint_dir(output_dir, step)
        # This step's checkpoint may exist already: rewriting it would only put it at risk (a second Ctrl-C).
        saved = last_checkpoint == already and (already / ckpt.COMPLETE).is_file()
        if not saved and world == 1:  # with several processes the others may be gone: no collective save possible
            last_checkpoint, saved = checkpoint_now(rng_at_step, loader_at_step), True
        if saved:
            log.message(f"interrupted at step {step}: checkpoint {last_checkpoint}; continue with --resume latest")
    train_seconds = time.perf_counter() - start_time

    # ---- Output: the trained model (adapter or full), tokenizer, config, plot
    if status == "finished":
        save_model(accelerator, model, output_dir, model_path, config, data, metrics=last_eval, step=step)
    log.close()
    accelerator.wait_for_everyone() if status != "interrupted" else None
    if accelerator.is_main_process:
        plot_metrics(output_dir)
        summary = {"type": "summary", "status": status, "step": step, "train_seconds": train_seconds,
                   "best_step": best_step, "best_metric": best_metric, **last_eval,
                   **{f"dropped_{split}": n for split, n in data.dropped.items()}}  # fmt: skip
        with (output_dir / "metrics.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(summary) + "\n")
    return TrainResult(
        output_dir, step, status, last_eval, best_metric, best_step, last_checkpoint, train_seconds,
        accelerator.is_main_process, dict(data.dropped),
    )  # fmt: skip
