"""The kinds of training ferrotune knows, one module each, and the GLUE presets (data: columns, labels, metrics).

``task_for(kind)`` gives the :class:`Task` of a kind; a new kind is a ``Task`` subclass in its own module, added to
``_REGISTRY`` below.
"""

from __future__ import annotations

from ...errors import ConfigError
from .base import MODEL_INPUTS, Task
from .causal_lm import CAUSAL_LM, CausalLM
from .classification import CLASSIFICATION, REGRESSION, Classification, Regression
from .glue import GLUE_TASKS, GlueTask
from .masked_lm import MLM, MaskedLM
from .question_answering import QUESTION_ANSWERING, QuestionAnswering
from .seq2seq import SEQ2SEQ, Seq2Seq
from .sft import SFT, ChatSFT
from .token_classification import TOKEN_CLASSIFICATION, TokenClassification

_REGISTRY: dict[str, Task] = {
    task.kind: task
    for task in (Classification(), Regression(), CausalLM(), TokenClassification(), QuestionAnswering(), MaskedLM(),
                 Seq2Seq(), ChatSFT())
}  # fmt: skip
KINDS = tuple(_REGISTRY)  # what the model head is and how the loss is computed
TASKS = (*GLUE_TASKS, *KINDS)  # what --task accepts


def task_for(kind: str) -> Task:
    """The Task of a kind ("classification", "regression", "causal-lm", "token-classification",
    "question-answering", "mlm", "seq2seq", "sft")."""
    task = _REGISTRY.get(kind)
    if task is None:
        raise ConfigError(f"unknown task kind {kind!r}; choose one of {', '.join(KINDS)}")
    return task


__all__ = [
    "CAUSAL_LM", "CLASSIFICATION", "GLUE_TASKS", "KINDS", "MLM", "MODEL_INPUTS", "QUESTION_ANSWERING", "REGRESSION",
    "SEQ2SEQ", "SFT", "TASKS", "TOKEN_CLASSIFICATION", "CausalLM", "ChatSFT", "Classification", "GlueTask", "MaskedLM",
    "QuestionAnswering", "Regression", "Seq2Seq", "Task", "TokenClassification", "task_for",
]  # fmt: skip
