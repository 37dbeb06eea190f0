"""ferrotune train --task question-answering (SQuAD): reading SQuAD files, the course's windows and labels (compared
with the course's functions on transformers' tokenizer), the course's post-processing, SQuAD v1.1's exact match and
F1 (compared with the official script's logic), the errors of bad data, and a short LoRA run."""

from __future__ import annotations

import collections
import json
import random
import re
import string
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import DATA_DIR, REPO_ROOT, require_data_dir, require_minilm_dir
from train_support import records


def squad_file():
    path = require_data_dir() / "squad" / "dev-v1.1.json"
    if not path.is_file():
        pytest.skip(f"SQuAD v1.1 dev file not found at {path}")
    return path


def squad_examples(count: int | None = None, start: int = 0) -> dict[str, list]:
    """Rows of the dev file in the Hugging Face ``squad`` dataset's layout (a batch of ``Dataset.map``)."""
    from ferrotune.sources import DataFiles

    table = DataFiles(squad_file()).read()
    return table.slice(start, count).to_pydict()


# --------------------------------------------------------------------------------------------------
# Reading SQuAD files


def test_squad_file_reads_one_row_per_question(tmp_path):
    from ferrotune.sources import DataFiles

    files = DataFiles(squad_file())  # a .json file that starts as SQuAD's: read as SQuAD, not JSON Lines
    assert files.columns()[0][1] == ["id", "title", "context", "question", "answers"]
    table = files.read()
    assert table.num_rows == 10570 and len(set(table.column("title").to_pylist())) == 48
    first = table.slice(0, 1).to_pylist()[0]
    assert first["id"] == "56be4db0acb8001400a502ec" and first["title"] == "Super_Bowl_50"
    assert first["question"] == "Which NFL team represented the AFC at Super Bowl 50?"
    assert first["answers"] == {"text": ["Denver Broncos"] * 3, "answer_start": [177] * 3}

    # --format squad for another extension; a JSON Lines .json file is still JSON Lines.
    small = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Paris is big.", "qas": [
        {"id": "q1", "question": "What is big?", "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}  # fmt: skip
    (tmp_path / "small.txt").write_text(json.dumps(small, indent=2))
    assert DataFiles(tmp_path / "small.txt", "squad").read().column("id").to_pylist() == ["q1"]
    (tmp_path / "rows.json").write_text('{"data": 1}\n{"data": 2}\n')
    assert DataFiles(tmp_path / "rows.json").read().column("data").to_pylist() == [1, 2]


def test_readme_split_gives_38_and_10_articles(tmp_path):
    """The README's split of the dev file (its bash block, run as written)."""
    squad_file()
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    (script,) = re.findall(r"python - <<'EOF'[^\n]*\n(.*?)\n *EOF\n", readme, flags=re.S)
    script = textwrap.dedent(script).replace("../shared/data", str(DATA_DIR))
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True)
    from ferrotune.sources import DataFiles

    train, evaluation = (DataFiles(tmp_path / f"squad-{name}.json").read() for name in ("train", "eval"))
    assert len(set(train.column("title").to_pylist())) == 38 and len(set(evaluation.column("title").to_pylist())) == 10
    assert (train.num_rows, evaluation.num_rows) == (8582, 1988)  # as the README says
    assert not set(train.column("title").to_pylist()) & set(evaluation.column("title").to_pylist())


# --------------------------------------------------------------------------------------------------
# Preprocessing: the course's functions, run with transformers' own tokenizer


def course_preprocess(tokenizer, examples, max_length, stride):
    """The Hugging Face course (chapter 7, question answering): preprocess_training_examples, and
    preprocess_validation_examples's masked offsets and example ids (both tokenize the same way)."""
    questions = [q.strip() for q in examples["question"]]
    inputs = tokenizer(questions, examples["context"], max_length=max_length, truncation="only_second", stride=stride,
                       return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")  # fmt: skip
    offset_mapping = inputs["offset_mapping"]
    sample_map = inputs["overflow_to_sample_mapping"]
    answers = examples["answers"]
    start_positions, end_positions, example_ids, masked = [], [], [], []
    for i, offset in enumerate(offset_mapping):
        sample_idx = sample_map[i]
        answer = answers[sample_idx]
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
        example_ids.append(examples["id"][sample_idx])
        masked.append([o if sequence_ids[k] == 1 else None for k, o in enumerate(offset)])
    return inputs, start_positions, end_positions, example_ids, masked


@pytest.mark.parametrize(("max_length", "stride", "count", "start"), [(384, 128, 300, 0), (96, 32, 150, 5000)])
def test_windows_equal_the_course(tmp_path, max_length, stride, count, start):
    from ferrotune.training.modeling import load_tokenizer
    from ferrotune.training.tasks import task_for
    from transformers import AutoTokenizer

    model = require_minilm_dir()
    examples = squad_examples(count, start)
    reference = AutoTokenizer.from_pretrained(model)
    inputs, starts, ends, example_ids, masked = course_preprocess(reference, examples, max_length, stride)

    import pyarrow as pa
    from ferrotune import TrainConfig

    config = TrainConfig(task="question-answering", train="x.json", max_length=max_length, doc_stride=stride).validate()
    task = task_for("question-answering")
    encoded = task.encode(load_tokenizer(model), pa.table(examples), max_length, config)
    lengths = [sum(mask) for mask in inputs["attention_mask"]]
    assert encoded.num_rows == len(inputs["input_ids"]) > count  # some questions have several windows
    assert encoded.column("input_ids").to_pylist() == [ids[:n] for ids, n in zip(inputs["input_ids"], lengths)]
    assert encoded.column("token_type_ids").to_pylist() == [t[:n] for t, n in zip(inputs["token_type_ids"], lengths)]
    labels = encoded.column("labels").to_pylist()
    assert [label[:2] for label in labels] == [[s, e] for s, e in zip(starts, ends)]
    assert [label[2] for label in labels] == list(range(len(labels)))
    assert any(s == 0 for s in starts) and any(s > 0 for s in starts)  # answers in and out of windows
    evaluation = task.evaluation
    assert [examples["id"][e] for e in evaluation.feature_examples] == example_ids
    assert evaluation.offsets == [[None if o is None else tuple(o) for o in m[:n]] for m, n in zip(masked, lengths)]
    # Labelled spans cover the answer's characters (when the window holds it).
    for (s, e, _), example, offsets in zip(labels, evaluation.feature_examples, evaluation.offsets):
        if s:
            text = examples["answers"][example]["text"][0]
            assert text in examples["context"][example][offsets[s][0] : offsets[e][1]]


def test_batches_and_loss(tmp_path):
    import pyarrow as pa
    import torch
    from ferrotune import TrainConfig
    from ferrotune.training.modeling import load_tokenizer
    from ferrotune.training.tasks import task_for

    task = task_for("question-answering")
    examples = pa.table(squad_examples(20))
    config = TrainConfig(task="question-answering", train="x.json", batch_size=8, bucketing="none").validate()
    loader = task.train_loader(config, load_tokenizer(require_minilm_dir()), examples, 0, 1)
    batch = next(iter(loader))
    assert batch["labels"].shape == (8, 3) and batch["input_ids"].shape == batch["attention_mask"].shape

    # The loss is transformers' BertForQuestionAnswering's (the mean of two cross-entropies), summed over windows.
    logits = torch.randn(4, 10, 2)
    labels = torch.tensor([[1, 3, 0], [0, 0, 1], [9, 9, 2], [12, 15, 3]])  # the last clamped to 10: ignored
    ce = torch.nn.CrossEntropyLoss(ignore_index=10)
    expected = (ce(logits[:3, :, 0], labels[:3, 0]) + ce(logits[:3, :, 1], labels[:3, 1])) / 2 * 3
    assert float(task.loss(logits, labels)) == pytest.approx(float(expected), rel=1e-6)


# --------------------------------------------------------------------------------------------------
# Post-processing and metrics


def course_compute_metrics(start_logits, end_logits, features, examples, n_best, max_answer_length):
    """The course's compute_metrics (its post-processing), returning the predicted texts."""
    example_to_features = collections.defaultdict(list)
    for idx, feature in enumerate(features):
        example_to_features[feature["example_id"]].append(idx)
    predicted_answers = []
    for example in examples:
        example_id = example["id"]
        context = example["context"]
        answers = []
        for feature_index in example_to_features[example_id]:
            start_logit = start_logits[feature_index]
            end_logit = end_logits[feature_index]
            offsets = features[feature_index]["offset_mapping"]
            start_indexes = np.argsort(start_logit)[-1 : -n_best - 1 : -1].tolist()
            end_indexes = np.argsort(end_logit)[-1 : -n_best - 1 : -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if offsets[start_index] is None or offsets[end_index] is None:
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    answers.append({
                        "text": context[offsets[start_index][0] : offsets[end_index][1]],
                        "logit_score": start_logit[start_index] + end_logit[end_index],
                    })  # fmt: skip
        if len(answers) > 0:
            predicted_answers.append(max(answers, key=lambda x: x["logit_score"])["text"])
        else:
            predicted_answers.append("")
    return predicted_answers


def test_best_answers_equal_the_course():
    import pyarrow as pa
    from ferrotune import TrainConfig
    from ferrotune.training.modeling import load_tokenizer
    from ferrotune.training.tasks import task_for
    from ferrotune.training.tasks.question_answering import best_answers

    examples = squad_examples(120, 200)
    task = task_for("question-answering")
    config = TrainConfig(task="question-answering", train="x.json", max_length=96, doc_stride=32).validate()
    task.encode(load_tokenizer(require_minilm_dir()), pa.table(examples), 96, config)
    evaluation = task.evaluation
    rng = np.random.default_rng(0)
    starts = [rng.normal(size=len(o)).astype(np.float32) for o in evaluation.offsets]
    ends = [rng.normal(size=len(o)).astype(np.float32) for o in evaluation.offsets]
    features = [{"example_id": examples["id"][e], "offset_mapping": o}
                for e, o in zip(evaluation.feature_examples, evaluation.offsets)]  # fmt: skip
    rows = [dict(zip(examples, values)) for values in zip(*examples.values())]
    for n_best, longest in ((20, 30), (3, 2), (1, 1)):
        ours = best_answers(starts, ends, evaluation.feature_examples, evaluation.offsets, evaluation.contexts,
                            n_best, longest)  # fmt: skip
        assert [a["answer"] for a in ours] == course_compute_metrics(starts, ends, features, rows, n_best, longest)
    assert any(a["answer"] == "" and a["logit_score"] is None for a in ours)  # n_best 1: often no valid span
    for answer, context in zip(ours, evaluation.contexts):
        assert context[answer["start"] : answer["end"]] == answer["answer"]


# The official SQuAD v1.1 evaluation script's functions (evaluate-v1.1.py), as published.
def official_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_f1_score(prediction, ground_truth):
    prediction_tokens = official_normalize_answer(prediction).split()
    ground_truth_tokens = official_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def official_exact_match_score(prediction, ground_truth):
    return official_normalize_answer(prediction) == official_normalize_answer(ground_truth)


def official_evaluate(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                ground_truths = [x["text"] for x in qa["answers"]]
                prediction = predictions[qa["id"]]
                exact_match += max(official_exact_match_score(prediction, gt) for gt in ground_truths)
                f1 += max(official_f1_score(prediction, gt) for gt in ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def test_squad_scores_by_hand():
    from ferrotune.training.tasks.question_answering import normalize_answer, squad_scores

    assert normalize_answer("  The Denver-Broncos, an NFL team!") == "denverbroncos nfl team"
    # "Denver Broncos" vs gold ["The Denver Broncos", "Broncos"]: exact (articles dropped) -> EM 1, F1 1.
    # "the Broncos team" vs ["Denver Broncos"]: 1 shared token, P 1/2, R 1/2 -> F1 0.5, EM 0.
    # "Carolina" vs ["Denver"]: nothing shared -> 0, 0.
    scores = squad_scores(["Denver Broncos", "the Broncos team", "Carolina"],
                          [["The Denver Broncos", "Broncos"], ["Denver Broncos"], ["Denver"]])  # fmt: skip
    assert scores == pytest.approx({"exact_match": 100 / 3, "f1": 150 / 3})
    assert squad_scores(["", "a"], [["x"], ["the"]]) == {"exact_match": 50.0, "f1": 0.0}  # "a" and "the" -> ""


def test_squad_scores_equal_the_official_script():
    from ferrotune.training.tasks.question_answering import squad_scores

    dataset = json.loads(squad_file().read_text(encoding="utf-8"))["data"][:6]
    rng = random.Random(0)
    predictions, gold = {}, []
    for article in dataset:
        for paragraph in article["paragraphs"]:
            words = paragraph["context"].split()
            for qa in paragraph["qas"]:
                answers = [x["text"] for x in qa["answers"]]
                choice = rng.random()
                if choice < 0.3:
                    prediction = rng.choice(answers)
                elif choice < 0.5:
                    prediction = "The " + rng.choice(answers).upper() + "."
                else:
                    start = rng.randrange(len(words))
                    prediction = " ".join(words[start : start + rng.randrange(1, 6)])
                predictions[qa["id"]] = prediction
                gold.append((prediction, answers))
    ours = squad_scores([p for p, _ in gold], [a for _, a in gold])
    assert ours == pytest.approx(official_evaluate(dataset, predictions), abs=1e-9)
    assert 10 < ours["exact_match"] < 90 and ours["f1"] > ours["exact_match"]


# --------------------------------------------------------------------------------------------------
# Bad data: errors naming the file and the question


def _squad(path, qas, context="Paris is big."):
    path.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}))
    return path


def _load(tmp_path, train, **overrides):
    from ferrotune import TrainConfig
    from ferrotune.training.data import load_task_data

    options = {"task": "question-answering", "train": str(train), "output_dir": str(tmp_path / "run"), **overrides}
    return load_task_data(TrainConfig.from_dict(options).validate())


def _qa(qid="q1", question="What is big?", text="Paris", start=0):
    return {"id": qid, "question": question, "answers": [{"text": text, "answer_start": start}]}


def test_errors_name_the_file_and_question(tmp_path):
    from ferrotune.errors import ConfigError, DataError

    good = _squad(tmp_path / "good.json", [_qa()])
    assert _load(tmp_path, good).train.column("answers").to_pylist() == [{"text": ["Paris"], "answer_start": [0]}]

    bad = _squad(tmp_path / "moved.json", [_qa(), _qa("q2", start=1)])
    with pytest.raises(DataError, match=r"moved\.json row 2 \(question id 'q2'\): answer 'Paris' is not at "
                       r"answer_start 1 of the context, which reads 'aris '"):  # fmt: skip
        _load(tmp_path, bad)
    bad = _squad(tmp_path / "outside.json", [_qa("q3", start=11)])
    with pytest.raises(DataError, match=r"outside\.json row 1 \(question id 'q3'\): answer 'Paris' starts at "
                       r"character 11, outside its context \(13 characters\)"):  # fmt: skip
        _load(tmp_path, bad)
    bad = _squad(tmp_path / "none.json", [{"id": "q4", "question": "Why?", "answers": []}])
    with pytest.raises(DataError, match=r"question id 'q4'\) has no answer.*unanswerable"):
        _load(tmp_path, bad)
    bad = _squad(tmp_path / "noquestion.json", [{"id": "q5", "answers": []}])
    with pytest.raises(DataError, match=r"noquestion\.json' article 0 \('T'\) paragraph 0 question 0 \(id 'q5'\): "
                       '"question" is NoneType, not text'):  # fmt: skip
        _load(tmp_path, bad)
    (tmp_path / "nocontext.json").write_text(json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(DataError, match=r'article 0 \(None\) paragraph 0: "context" is NoneType, not text'):
        _load(tmp_path, tmp_path / "nocontext.json")
    (tmp_path / "broken.json").write_text('{"data": [{"title": ')
    with pytest.raises(DataError, match=r"broken\.json' is not a SQuAD JSON file"):
        _load(tmp_path, tmp_path / "broken.json")
    (tmp_path / "list.txt").write_text("[1, 2]")
    with pytest.raises(DataError, match=r'list\.txt\' top level: no "data" list of articles'):
        _load(tmp_path, tmp_path / "list.txt", format="squad")

    # JSONL rows with the squad dataset's columns: the same checks, by line.
    rows = [
        {"id": "a", "context": "Paris is big.", "question": "Q?", "answers": {"text": ["big"], "answer_start": [9]}},
        {"id": "b", "context": None, "question": "Q?", "answers": {"text": ["big"], "answer_start": [9]}},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"context column 'context' is empty or missing in .*rows\.jsonl line 2"):
        _load(tmp_path, tmp_path / "rows.jsonl")
    rows[1] = {**rows[0], "id": "b", "answers": {"text": ["big", "Paris"], "answer_start": [9]}}
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"rows\.jsonl line 2 \(question id 'b'\): 2 answer texts but 1 answer_start"):
        _load(tmp_path, tmp_path / "rows.jsonl")
    rows[1] = {**rows[0], "id": "b", "answers": [{"text": "Paris", "answer_start": 0}]}  # a list of answers
    (tmp_path / "rows.jsonl").write_text(json.dumps(rows[1]) + "\n")
    assert _load(tmp_path, tmp_path / "rows.jsonl").train.column("answers").to_pylist() == [
        {"text": ["Paris"], "answer_start": [0]}
    ]

    # A question that leaves no room for its context in a window.
    from ferrotune.training.modeling import load_tokenizer
    from ferrotune.training.tasks.question_answering import encode_windows

    tokenizer = load_tokenizer(require_minilm_dir())
    for stride in (0, 16):
        with pytest.raises(DataError, match="cannot cut the contexts into windows of 64 tokens overlapping by"):
            encode_windows(tokenizer, ["why " * 70], ["Paris is big."], [(0, 5)], 64, stride)

    with pytest.raises(ConfigError, match="text_column does not apply to question-answering"):
        _load(tmp_path, good, text_column="question")
    with pytest.raises(ConfigError, match="doc_stride"):
        _load(tmp_path, good, max_length=64, doc_stride=64)


# --------------------------------------------------------------------------------------------------
# A short run


def test_train_squad_with_lora_reports_exact_match_and_f1(tmp_path, monkeypatch, capsys):
    pytest.importorskip("peft")
    import ferrotune
    import torch
    from ferrotune.cli import main
    from peft import PeftModel
    from transformers import AutoModelForQuestionAnswering

    model = require_minilm_dir()
    squad = squad_file()
    result = ferrotune.train(task="question-answering", train=str(squad), eval=str(squad), max_train_examples=32,
                             max_eval_examples=16, epochs=1, batch_size=16, max_length=128, doc_stride=32,
                             learning_rate=1e-3, output_dir=str(tmp_path / "run"), log="quiet", seed=1)  # fmt: skip
    assert result.status == "finished" and result.steps == 4  # 32 questions -> 64 windows of 128 tokens -> 4 x 16
    (evaluation,) = records(tmp_path / "run", "eval")
    assert {"eval_loss", "eval_exact_match", "eval_f1"} <= set(evaluation)
    assert 0.0 <= evaluation["eval_exact_match"] <= evaluation["eval_f1"] <= 100.0
    assert evaluation["eval_loss"] < np.log(128)  # better than uniform start/end logits
    task = json.loads((tmp_path / "run" / "ferrotune_task.json").read_text())
    assert task["kind"] == "question-answering" and task["metrics"] == ["exact_match", "f1"]
    assert task["max_length"] == 128

    # The adapter holds the trained qa_outputs head: loaded back, the model answers as the run's model.
    from safetensors import safe_open

    with safe_open(tmp_path / "run" / "adapter_model.safetensors", "pt") as weights:
        assert any("qa_outputs" in key for key in weights.keys())
    tokenizer = ferrotune.Tokenizer.from_pretrained(tmp_path / "run")
    batch = tokenizer(["What is big?"], ["Paris is big."], return_tensors="pt")
    loaded = PeftModel.from_pretrained(AutoModelForQuestionAnswering.from_pretrained(model), tmp_path / "run").eval()
    with torch.no_grad():
        output = loaded(**batch)
    assert output.start_logits.shape == output.end_logits.shape == batch["input_ids"].shape

    # ferrotune.predict answers as the course's post-processing of the loaded model's logits on transformers' windows
    from ferrotune.sources import DataFiles
    from transformers import AutoTokenizer

    rows = DataFiles(squad, "squad").read().slice(100, 6).to_pydict()
    rows["context"][0] = " ".join([rows["context"][0]] * 3)  # several windows
    answers = ferrotune.predict(tmp_path / "run", rows["question"], rows["context"])
    reference = AutoTokenizer.from_pretrained(tmp_path / "run")
    inputs, _, _, example_ids, masked = course_preprocess(reference, rows, 128, 32)
    with torch.no_grad():
        output = loaded(**{k: torch.tensor(inputs[k]) for k in ("input_ids", "attention_mask", "token_type_ids")})
    # Each window's logits without its padding (the course pads windows to max_length, where padding can take
    # n-best places; ferrotune pads per batch: trimmed, the two agree).
    lengths = [sum(mask) for mask in inputs["attention_mask"]]
    features = [{"example_id": e, "offset_mapping": m[:n]} for e, m, n in zip(example_ids, masked, lengths)]
    expected = course_compute_metrics(
        [row[:n] for row, n in zip(output.start_logits.numpy(), lengths)],
        [row[:n] for row, n in zip(output.end_logits.numpy(), lengths)],
        features,
        [{"id": i, "context": c} for i, c in zip(rows["id"], rows["context"])],
        20,
        30,
    )
    assert [a["answer"] for a in answers] == expected
    for answer, context in zip(answers, rows["context"]):
        assert set(answer) == {"score", "start", "end", "answer"} and 0.0 < answer["score"] <= 1.0
        assert context[answer["start"] : answer["end"]] == answer["answer"]

    # The command line: "question<TAB>context" lines; a question without its context is refused.
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(f"{rows['question'][1]}\t{rows['context'][1]}\n"))
    assert main(["predict", str(tmp_path / "run")]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == expected[1]
    monkeypatch.setattr("sys.stdin", io.StringIO("What is big?\n"))
    assert main(["predict", str(tmp_path / "run")]) == 2
    assert "(question, context) pairs" in capsys.readouterr().err
