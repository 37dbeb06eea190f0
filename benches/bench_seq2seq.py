"""Seq2seq fine-tuning on CPU, English -> French: the course's path (datasets.map with text_target,
DataCollatorForSeq2Seq, Seq2SeqTrainer with predict_with_generate) against `ferrotune train --task seq2seq`.

No pretrained T5 is reachable here: both paths train the same small T5 built from a config (random weights, the
t5-small tokenizer; d_model 256, 4 encoder + 4 decoder layers by default) from scratch, full fine-tuning (LoRA on
random weights would train almost nothing), same seed, batch size, learning rate, epochs, max lengths and greedy
generation. Data: Tatoeba fra-eng (../shared/data/translation/fra-eng/fra.txt), the README's split (every 50th pair
held out), then a seeded sample of 10,000 training pairs and 500 evaluation pairs (--limit / --eval-limit).

Reported per path: preprocessing seconds (tokenizing sources and targets of the training pairs, min of --repeats;
checked identical first), end-to-end wall seconds (reading, preprocessing, model loading, training, evaluation with
generation), training seconds, real (non-padding) source tokens per training second and the padding fraction of the
training batches' sources (what ferrotune's metrics.jsonl counts: the attention mask), eval loss, and corpus BLEU /
chrF of the generated translations (sacreBLEU, the same scoring function on both paths). A random-weight model's
BLEU is low after an epoch: the figures compare the two paths on the same model, they say nothing about T5's
quality.

Run from the repository root:  python benches/bench_seq2seq.py [--quick]"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_JSON = REPO_ROOT / "benches" / "results" / "bench_seq2seq.json"
PATHS = ("transformers", "ferrotune")
PREFIX = "translate English to French: "
MAX_LENGTH = 128
QUICK = {"limit": 256, "eval_limit": 32, "epochs": 1, "repeats": 1, "d_model": 64, "layers": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data (default: %(default)s)")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of %(default)s")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: 1)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit", type=int, default=None, help="training pairs (default: 10,000)")
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluation pairs (default: 500)")
    parser.add_argument("--generation-max-length", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=None, help="T5 width (default: 256)")
    parser.add_argument("--layers", type=int, default=None, help="T5 layers per stack (default: 4)")
    parser.add_argument("--repeats", type=int, default=None, help="preprocessing timings, min of N (default: 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="raw results (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"limit": 10_000, "eval_limit": 500, "epochs": 1, "repeats": 3,
                                         "d_model": 256, "layers": 4}  # fmt: skip
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.paths = [name.strip() for name in args.paths.split(",") if name.strip()]
    unknown = sorted(set(args.paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown paths {unknown}; choose from {list(PATHS)}")
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def best_of(repeats: int, function) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def split_pairs(args: argparse.Namespace, folder: Path) -> tuple[Path, Path]:
    """The README's split (every 50th line held out), then seeded samples of --limit / --eval-limit pairs, written as
    headerless TSV files."""
    with (args.data_dir / "translation" / "fra-eng" / "fra.txt").open(encoding="utf-8", newline="") as handle:
        lines = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    train = [pair for i, pair in enumerate(lines, 1) if i % 50 != 0]
    evaluation = [pair for i, pair in enumerate(lines, 1) if i % 50 == 0]
    rng = random.Random(args.seed)
    train, evaluation = rng.sample(train, args.limit), rng.sample(evaluation, args.eval_limit)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "train.tsv", folder / "eval.tsv"
    for path, pairs in zip(paths, (train, evaluation)):
        path.write_text("".join(f"{en}\t{fr}\n" for en, fr in pairs), encoding="utf-8")
    return paths


def read_pairs(path: Path) -> dict[str, list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return {"en": [en for en, _ in rows], "fr": [fr for _, fr in rows]}


def build_model(args: argparse.Namespace, folder: Path) -> Path:
    """A T5 from a config (random weights, seeded) with the t5-small tokenizer files, saved once for both paths."""
    import torch
    import transformers

    tokenizer_dir = args.data_dir / "tokenizers" / "t5-small"
    config = transformers.T5Config(
        vocab_size=32100, d_model=args.d_model, d_ff=4 * args.d_model, num_layers=args.layers,
        num_decoder_layers=args.layers, num_heads=max(1, args.d_model // 64), d_kv=64, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(args.seed)
    transformers.T5ForConditionalGeneration(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer_dir / name).is_file():
            shutil.copyfile(tokenizer_dir / name, folder / name)
    return folder


def course_tokenize(tokenizer, pairs: dict[str, list[str]]):
    """The course's preprocess_function over datasets.map: prefixed sources, targets as labels (text_target)."""
    import datasets

    def preprocess_function(examples):
        inputs = [PREFIX + text for text in examples["en"]]
        return tokenizer(inputs, text_target=examples["fr"], max_length=MAX_LENGTH, truncation=True)

    raw = datasets.Dataset.from_dict(pairs)
    return raw.map(preprocess_function, batched=True, remove_columns=raw.column_names)


def ferrotune_tokenize(tokenizer, pairs: dict[str, list[str]]):
    import pyarrow as pa
    from ferrotune.training.tasks import task_for

    class Options:  # the TrainConfig fields the task's encode reads
        source_prefix = PREFIX
        max_target_length = MAX_LENGTH

    table = pa.table({"text": pairs["en"], "target": pairs["fr"]})
    return task_for("seq2seq").encode(tokenizer, table, MAX_LENGTH, Options())


def preprocessing(args: argparse.Namespace, model_dir: Path, train_file: Path) -> dict:
    import transformers
    from ferrotune.training.modeling import load_tokenizer

    pairs = read_pairs(train_file)
    reference = transformers.AutoTokenizer.from_pretrained(model_dir)
    tokenizer = load_tokenizer(model_dir)
    course, ours = course_tokenize(reference, pairs), ferrotune_tokenize(tokenizer, pairs)
    for name in ("input_ids", "attention_mask", "labels"):
        assert ours.column(name).to_pylist() == course[name], f"{name} differ from the course's"
    timings = {
        "transformers": best_of(args.repeats, lambda: course_tokenize(reference, pairs)),
        "ferrotune": best_of(args.repeats, lambda: ferrotune_tokenize(tokenizer, pairs)),
    }
    tokens = sum(map(len, course["input_ids"])) + sum(map(len, course["labels"]))
    return {"examples": len(pairs["en"]), "tokens": int(tokens), "seconds": timings}


def run_transformers(args: argparse.Namespace, model_dir: Path, output_dir: Path, files: tuple[Path, Path]) -> dict:
    start = time.perf_counter()
    import numpy as np
    import transformers
    from ferrotune.training.tasks.seq2seq import corpus_scores

    train_pairs, eval_pairs = read_pairs(files[0]), read_pairs(files[1])
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    train, evaluation = course_tokenize(tokenizer, train_pairs), course_tokenize(tokenizer, eval_pairs)
    transformers.set_seed(args.seed)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    counts = {"real": 0, "padded": 0}
    collate = transformers.DataCollatorForSeq2Seq(tokenizer, model=model)

    def collator(features):
        batch = collate(features)
        if model.training:  # source tokens, as ferrotune's metrics.jsonl counts them (its attention mask)
            counts["real"] += int(batch["attention_mask"].sum())
            counts["padded"] += batch["attention_mask"].numel()
        return batch

    training_args = transformers.Seq2SeqTrainingArguments(
        output_dir=str(output_dir), learning_rate=args.learning_rate, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, num_train_epochs=args.epochs, weight_decay=0.0, max_grad_norm=1.0,
        lr_scheduler_type="linear", warmup_steps=0, eval_strategy="no", save_strategy="no", logging_strategy="no",
        report_to=[], seed=args.seed, use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
        predict_with_generate=True, generation_max_length=args.generation_max_length, generation_num_beams=1,
    )  # fmt: skip
    trainer = transformers.Seq2SeqTrainer(model=model, args=training_args, train_dataset=train,
                                          data_collator=collator)  # fmt: skip
    train_start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_start
    prediction = trainer.predict(evaluation)
    generated = np.where(prediction.predictions != -100, prediction.predictions, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
    scores = corpus_scores([t.strip() for t in texts], eval_pairs["fr"])
    return {
        "wall_seconds": time.perf_counter() - start, "train_seconds": train_seconds, "real_tokens": counts["real"],
        "padded_tokens": counts["padded"], "eval_loss": prediction.metrics["test_loss"], "bleu": scores["bleu"],
        "chrf": scores["chrf"],
    }  # fmt: skip


def run_ferrotune(args: argparse.Namespace, model_dir: Path, output_dir: Path, files: tuple[Path, Path]) -> dict:
    start = time.perf_counter()
    import ferrotune

    result = ferrotune.train(
        model=str(model_dir), task="seq2seq", train=str(files[0]), eval=str(files[1]), format="tsv",
        column_names=["source", "target"], source_prefix=PREFIX, output_dir=str(output_dir), lora_r=0,
        max_length=MAX_LENGTH, max_target_length=MAX_LENGTH, learning_rate=args.learning_rate,
        batch_size=args.batch_size, eval_batch_size=64, epochs=args.epochs, seed=args.seed,
        generation_max_length=args.generation_max_length, num_beams=1, log="quiet",
    )  # fmt: skip
    wall = time.perf_counter() - start
    steps = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r for r in steps if r["type"] == "train"]
    real = sum(r["real_tokens"] for r in train_steps)
    padded = sum(r["real_tokens"] / (1 - r["pad_fraction"]) for r in train_steps)
    metrics = result.eval_metrics
    return {
        "wall_seconds": wall, "train_seconds": result.train_seconds, "real_tokens": real,
        "padded_tokens": round(padded), "eval_loss": metrics["eval_loss"], "bleu": metrics["eval_bleu"],
        "chrf": metrics["eval_chrf"],
    }  # fmt: skip


def library_versions() -> dict[str, str | None]:
    versions = {}
    for package in ("transformers", "ferrotune", "torch", "datasets", "sacrebleu"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def markdown(prep: dict, results: dict[str, dict]) -> str:
    seconds = prep["seconds"]
    lines = [f"preprocessing of {prep['examples']:,} training pairs ({prep['tokens']:,} source + target tokens):", "",
             "| path | seconds | tokens/s |", "|---|---|---|"]  # fmt: skip
    for path, value in seconds.items():
        lines.append(f"| {path} | {value:.3f} | {prep['tokens'] / value:,.0f} |")
    if len(seconds) == 2:
        lines.append(f"\npreprocessing speed-up: {seconds['transformers'] / seconds['ferrotune']:.1f}x\n")
    header = ["path", "wall s", "train s", "real tokens/s", "padding", "eval loss", "BLEU", "chrF"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for path, row in results.items():
        cells = [
            path, f"{row['wall_seconds']:.1f}", f"{row['train_seconds']:.1f}",
            f"{row['real_tokens'] / row['train_seconds']:,.0f}", f"{1 - row['real_tokens'] / row['padded_tokens']:.1%}",
            f"{row['eval_loss']:.4f}", f"{row['bleu']:.2f}", f"{row['chrf']:.2f}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    if len(results) == 2:
        ratio = results["transformers"]["wall_seconds"] / results["ferrotune"]["wall_seconds"]
        lines.append(f"\nend-to-end speed-up, wall(transformers) / wall(ferrotune): {ratio:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    datasets.disable_caching()
    datasets.disable_progress_bars()
    if not (args.data_dir / "translation" / "fra-eng" / "fra.txt").is_file():
        progress(f"Tatoeba fra-eng not found under {args.data_dir}: nothing to benchmark")
        return 1
    load_before = os.getloadavg()
    runners = {"transformers": run_transformers, "ferrotune": run_ferrotune}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        files = split_pairs(args, scratch / "data")
        model_dir = build_model(args, scratch / "model")
        progress(f"T5 d_model {args.d_model}, {args.layers}+{args.layers} layers; {args.limit} / {args.eval_limit} "
                 f"pairs; threads {args.threads}; epochs {args.epochs}")  # fmt: skip
        prep = preprocessing(args, model_dir, files[0])
        progress(f"preprocessing: {prep['seconds']}")
        for name in args.paths:
            results[name] = runners[name](args, model_dir, scratch / name, files)
            progress(f"{name}: {json.dumps({k: round(v, 4) for k, v in results[name].items()})}")
    report = {
        "benchmark": "seq2seq",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},
        "settings": {key: value for key, value in vars(args).items() if key not in ("json", "data_dir", "paths")},
        "ratio_definition": "seconds(transformers) / seconds(ferrotune)",
        "preprocessing": prep,
        "paths": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    versions = report["versions"]
    print(
        f"random-weight T5 (d_model {args.d_model}, {args.layers}+{args.layers} layers, t5-small tokenizer), full "
        f"fine-tuning, Tatoeba en->fr, {args.limit} train / {args.eval_limit} eval pairs, {args.epochs} epoch(s), "
        f"batch {args.batch_size}, lr {args.learning_rate}, greedy generation <= {args.generation_max_length} tokens; "
        f"{args.threads} threads of {os.cpu_count()} cores; transformers {versions['transformers']}, ferrotune "
        f"{versions['ferrotune']}, torch {versions['torch']}\n"
    )
    print(markdown(prep, results))
    print(f"\nraw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
