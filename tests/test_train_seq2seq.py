"""ferrotune train --task seq2seq (translation): the course's preprocessing and DataCollatorForSeq2Seq batches, a
short LoRA run on Tatoeba English-French pairs with a tiny T5 (random weights: no pretrained seq2seq model is at
hand), BLEU / chrF from generated texts, exact resumption, ferrotune predict, and the errors of bad input."""

from __future__ import annotations

import csv
import io
import json
import random
import shutil

import pytest
from conftest import require_data_dir
from train_support import records

PREFIX = "translate English to French: "
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def t5_tokenizer_dir():
    path = require_data_dir() / "tokenizers" / "t5-small"
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"t5-small tokenizer not found at {path}")
    return path


def fra_eng_pairs() -> list[tuple[str, str]]:
    path = require_data_dir() / "translation" / "fra-eng" / "fra.txt"
    if not path.is_file():
        pytest.skip(f"Tatoeba English-French pairs not found at {path}")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [tuple(row) for _, row in zip(range(20000), csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))]
    return random.Random(0).sample(rows, len(rows))  # a seeded split: train from the front, eval from the back


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    """A 2-layer T5 (d_model 64) with random weights and t5-small's tokenizer (vocab 32,100)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer_dir = t5_tokenizer_dir()
    folder = tmp_path_factory.mktemp("models") / "tiny-t5"
    torch.manual_seed(0)
    config = T5Config(vocab_size=32100, d_model=64, d_ff=128, num_layers=2, num_heads=2, d_kv=32,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, folder / name)
    return folder


def write_tsv(path, pairs):
    path.write_text("".join(f"{source}\t{target}\n" for source, target in pairs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    pairs = fra_eng_pairs()
    folder = tmp_path_factory.mktemp("fra-eng")
    return write_tsv(folder / "train.tsv", pairs[:160]), write_tsv(folder / "dev.tsv", pairs[-16:])


def options(model, train, dev, output_dir, **overrides) -> dict:
    values = {
        "task": "seq2seq", "model": str(model), "train": str(train), "eval": str(dev), "output_dir": str(output_dir),
        "column_names": ["source", "target"], "source_prefix": PREFIX, "batch_size": 32, "epochs": 3,
        "learning_rate": 1e-2, "generation_max_length": 10, "log": "quiet", "seed": 5,
    }  # fmt: skip
    values.update(overrides)
    return values


def test_readme_split(tmp_path):
    """The README's split of the Tatoeba pairs (its awk lines, run as written): every 50th pair held out."""
    import subprocess

    from conftest import DATA_DIR, REPO_ROOT
    from ferrotune import TrainConfig
    from ferrotune.training.data import load_task_data

    fra_eng_pairs()
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line.strip() for line in readme.splitlines() if line.strip().startswith("awk 'NR % 50")]
    assert len(lines) == 2
    for line in lines:
        subprocess.run(["bash", "-c", line.replace("../shared/data", str(DATA_DIR))], cwd=tmp_path, check=True)
    train, dev = (str(tmp_path / f"fra-eng-{split}.tsv") for split in ("train", "eval"))
    config = TrainConfig(task="seq2seq", model="unused", train=train, eval=dev, column_names=["source", "target"])
    data = load_task_data(config.validate())
    assert (data.train.num_rows, data.eval.num_rows) == (139932, 2855)  # as the README says
    assert data.eval.slice(0, 1).to_pylist() == [{"text": "No way!", "target": "Hors de question !"}]  # line 50


# --------------------------------------------------------------------------------------------------
# Preprocessing and batches: the course's, DataCollatorForSeq2Seq's


def test_batches_equal_transformers_collator(tiny_t5, data):
    import torch
    import transformers
    from ferrotune import TrainConfig
    from ferrotune.training.data import load_task_data
    from ferrotune.training.modeling import load_tokenizer
    from ferrotune.training.tasks import task_for

    config = TrainConfig.from_dict(options(tiny_t5, *data, "unused", max_length=24, max_target_length=24)).validate()
    task_data = load_task_data(config)
    table = task_data.train
    sources, targets = table.column("text").to_pylist(), table.column("target").to_pylist()
    assert (sources[0], targets[0]) == tuple(fra_eng_pairs()[0])

    # The course: tokenizer(inputs, text_target=targets, max_length=..., truncation=True), then the collator.
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_t5)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(tiny_t5)
    features = hf_tokenizer([PREFIX + s for s in sources], text_target=targets, max_length=24, truncation=True)
    features = [{key: features[key][i] for key in features} for i in range(len(sources))]
    hf_collator = transformers.DataCollatorForSeq2Seq(hf_tokenizer, model=model)

    task = task_for("seq2seq")
    tokenizer = load_tokenizer(tiny_t5)
    loader = task.train_loader(config, tokenizer, table, 0, 1)
    loader.set_epoch(1)
    # A batch's examples are recognised by their (source ids, target ids); every example comes once.
    by_ids = {(tuple(f["input_ids"]), tuple(f["labels"])): f for f in features}
    seen = 0
    for batch in loader:
        rows = zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist())
        examples = [by_ids[(tuple(i for i, m in zip(ids, mask) if m), tuple(t for t in labels if t != -100))]
                    for ids, mask, labels in rows]  # fmt: skip
        expected = hf_collator(examples)
        assert set(batch) == set(expected) == {"input_ids", "attention_mask", "labels", "decoder_input_ids"}
        for key in batch:
            assert torch.equal(batch[key], expected[key]), key
        seen += len(examples)
    assert seen == len(features)

    # The targets' own length limit (the course's single max_length cuts both).
    short = TrainConfig.from_dict(options(tiny_t5, *data, "unused", max_length=6, max_target_length=4)).validate()
    encoded = task.encode(tokenizer, table, short.max_length, short)
    assert encoded.column("input_ids").to_pylist() == hf_tokenizer([PREFIX + s for s in sources], max_length=6,
                                                                    truncation=True)["input_ids"]  # fmt: skip
    assert encoded.column("labels").to_pylist() == hf_tokenizer(text_target=targets, max_length=4,
                                                                 truncation=True)["input_ids"]  # fmt: skip

    # BART's decoder inputs: decoder_start_token_id 2 and pad 1 (not T5's 0 and 0).
    from ferrotune.training.tasks.seq2seq import DecoderInputs

    bart = transformers.BartForConditionalGeneration(transformers.BartConfig(
        vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16))  # fmt: skip
    labels = torch.tensor([[5, 6, 2, -100, -100], [7, 8, 9, 10, 2]])
    assert torch.equal(DecoderInputs(2, 1).prepare_decoder_input_ids_from_labels(labels),
                       bart.prepare_decoder_input_ids_from_labels(labels=labels))  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Training, evaluation, the adapter, predict


def test_cli_trains_scores_and_predicts(tiny_t5, data, tmp_path, monkeypatch, capsys):
    pytest.importorskip("peft")
    pytest.importorskip("sacrebleu")
    import ferrotune
    import torch
    from ferrotune.cli import main
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    train, dev = data
    run = tmp_path / "run"
    argv = ["train", "--task", "seq2seq", "--model", str(tiny_t5), "--train", str(train), "--eval", str(dev),
            "--column-names", "source,target", "--source-prefix", PREFIX, "--output-dir", str(run),
            "--batch-size", "32", "--epochs", "2", "--learning-rate", "1e-2", "--generation-max-length", "10",
            "--log", "quiet", "--seed", "5"]  # fmt: skip
    assert main(argv) == 0
    losses = [r["loss"] for r in records(run, "train")]
    assert len(losses) == 10  # 160 pairs / 32 = 5 steps x 2 epochs
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    evaluations = records(run, "eval")
    assert len(evaluations) == 2
    assert evaluations[-1]["eval_loss"] < evaluations[0]["eval_loss"]
    for evaluation in evaluations:
        assert {"eval_loss", "eval_bleu", "eval_chrf"} <= set(evaluation)
        assert 0.0 <= evaluation["eval_bleu"] <= 100.0 and 0.0 <= evaluation["eval_chrf"] <= 100.0
    task = json.loads((run / "ferrotune_task.json").read_text())
    assert task["kind"] == "seq2seq" and task["metrics"] == ["bleu", "chrf"] and task["source_prefix"] == PREFIX
    predicted = [json.loads(line) for line in (run / "eval_predictions.jsonl").read_text().splitlines()]
    dev_pairs = [line.split("\t") for line in dev.read_text().splitlines()]
    assert [(p["source"], p["reference"]) for p in predicted] == [tuple(pair) for pair in dev_pairs]

    # The adapter reloads onto its base model with PEFT and generates what the last evaluation generated.
    model = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(tiny_t5), run).eval()
    tokenizer = AutoTokenizer.from_pretrained(run)
    sources = [p["source"] for p in predicted[:4]]
    batch = tokenizer([PREFIX + s for s in sources], padding=True, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**batch, max_length=10, num_beams=1, do_sample=False)
    texts = [t.strip() for t in tokenizer.batch_decode(output, skip_special_tokens=True)]
    assert texts == [p["prediction"] for p in predicted[:4]]

    # ferrotune predict: one {"generated_text": ...} per input line, the prefix applied.
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(s + "\n" for s in sources)))
    assert main(["predict", str(run)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line) for line in lines] == [{"generated_text": t} for t in texts]

    # --merge folds the adapter into the T5: the merged folder generates the same texts, with no PEFT.
    assert main(["predict", str(run), "--merge", str(tmp_path / "merged")]) == 0
    merged = ferrotune.predict(tmp_path / "merged", sources)
    assert [m["generated_text"] for m in merged] == texts


def test_stop_and_resume_gives_the_uninterrupted_run(tiny_t5, data, tmp_path):
    pytest.importorskip("peft")
    import ferrotune

    small = {"max_train_examples": 48, "max_eval_examples": 8, "batch_size": 16, "epochs": 2,
             "generation_max_length": 6}  # fmt: skip
    whole = ferrotune.train(**options(tiny_t5, *data, tmp_path / "a", **small))
    ferrotune.train(**options(tiny_t5, *data, tmp_path / "b", stop_after_steps=2, **small))
    resumed = ferrotune.train(**options(tiny_t5, *data, tmp_path / "b", resume="latest", **small))
    assert resumed.status == "finished" and resumed.steps == whole.steps == 6
    losses = {run: [r["loss"] for r in records(tmp_path / run, "train")] for run in "ab"}
    assert losses["a"] == losses["b"]
    assert resumed.eval_metrics == whole.eval_metrics and "eval_bleu" in whole.eval_metrics
    assert (tmp_path / "b" / "eval_predictions.jsonl").read_text() == (
        tmp_path / "a" / "eval_predictions.jsonl"
    ).read_text()


def test_full_fine_tuning_without_generation(tiny_t5, data, tmp_path):
    import ferrotune

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "eval_predictions.jsonl").write_text("{}\n")  # an earlier run's: deleted by overwrite
    result = ferrotune.train(**options(
        tiny_t5, *data, tmp_path / "run", lora_r=0, learning_rate=1e-3, generation_max_length=0, max_train_examples=32,
        epochs=1, source_prefix=None, overwrite_output_dir=True,
    ))  # fmt: skip
    assert result.status == "finished" and set(result.eval_metrics) == {"eval_loss"}
    assert result.best_step == 1 and (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert not (tmp_path / "run" / "eval_predictions.jsonl").exists()
    (prediction,) = ferrotune.predict(tmp_path / "run", "Hello.")
    assert set(prediction) == {"generated_text"} and isinstance(prediction["generated_text"], str)


# --------------------------------------------------------------------------------------------------
# Bad input: errors before training


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _load(train, model, **overrides):
    from ferrotune import TrainConfig
    from ferrotune.training.data import load_task_data

    values = {"task": "seq2seq", "model": str(model), "train": str(train), "output_dir": "unused", **overrides}
    return load_task_data(TrainConfig.from_dict(values).validate())


def test_bad_input_errors(tiny_t5, tmp_path):
    import ferrotune
    from ferrotune import TrainConfig
    from ferrotune.errors import ColumnNotFoundError, ConfigError, DataError

    good = [{"source": "Go.", "target": "Va !"}, {"source": "Hi.", "target": "Salut !"}]
    assert _load(_jsonl(tmp_path / "good.jsonl", good), tiny_t5).train.num_rows == 2
    with pytest.raises(ColumnNotFoundError, match="target column 'french' is not in"):
        _load(tmp_path / "good.jsonl", tiny_t5, target_column="french")
    bad = _jsonl(tmp_path / "empty.jsonl", [*good, {"source": "Run!", "target": " "}])
    with pytest.raises(DataError, match=r"target column 'target' is empty in .*empty\.jsonl line 3"):
        _load(bad, tiny_t5)
    bad = _jsonl(tmp_path / "null.jsonl", [good[0], {"source": "Run!", "target": None}])
    with pytest.raises(DataError, match=r"target column 'target' is empty or missing in .*null\.jsonl line 2"):
        _load(bad, tiny_t5)
    # A TSV without a header row needs --column-names (its first line would be read as the header).
    tsv = write_tsv(tmp_path / "pairs.tsv", [("Go.", "Va !"), ("Hi.", "Salut !")])
    with pytest.raises(ColumnNotFoundError, match=r"source column 'source' is not in .*\['Go\.', 'Va !'\]"):
        _load(tsv, tiny_t5)
    assert _load(tsv, tiny_t5, column_names="english,french", text_column="english",
                 target_column="french").train.column("target").to_pylist() == ["Va !", "Salut !"]  # fmt: skip

    # Not an encoder-decoder model; no model at all.
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="'bert' model, not an encoder-decoder"):
        ferrotune.train(task="seq2seq", model=str(bert), train=str(tmp_path / "good.jsonl"))
    with pytest.raises(ConfigError, match="seq2seq needs --model"):
        TrainConfig(task="seq2seq", train="x.jsonl").validate()
    # Options that do not apply.
    for option, message in (({"packing": True}, "packing is for causal-lm"),
                            ({"label_all_tokens": True}, "label_all_tokens is for token-classification"),
                            ({"text_pair_column": "b"}, "text_pair_column does not apply"),
                            ({"num_beams": 0}, "num_beams must be a positive integer")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            TrainConfig(task="seq2seq", model=str(tiny_t5), train="x.jsonl", **option).validate()
    with pytest.raises(ConfigError, match="target_column and source_prefix are for seq2seq, not classification"):
        TrainConfig(train="x.tsv", source_prefix="summarize: ").validate()
