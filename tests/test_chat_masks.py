"""Loss masks for chat fine-tuning (``ferrotune.chat.tokenize_conversations``): from ``{% generation %}`` blocks they
equal transformers' ``assistant_masks``; from the message structure (templates without blocks) they equal the masks of
the same template with blocks around each assistant turn; they are never empty or wrong silently."""

from __future__ import annotations

import pytest
from test_chat_template import CHATML_GENERATION, EDGE_CASES, lima, smollm_dir, with_system

# SmolLM2's own template, and the same with {% generation %} around each assistant turn's content, end-of-turn
# token and newline (what the structure-based masks cover).
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou "
    "are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SMOLLM2_GENERATION = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou "
    "are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\n'}}{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + "
    "'<|im_end|>' + '\n' }}{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def pair():
    import ferrotune
    import transformers

    folder = smollm_dir()
    return ferrotune.Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


def conversations() -> list[list[dict]]:
    multi_turn = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                  {"role": "user", "content": "c"}, {"role": "assistant", "content": "d e"}]  # fmt: skip
    return with_system(lima(16) + EDGE_CASES) + [multi_turn]


def masked(labels: list[int]) -> list[int]:
    return [0 if value == -100 else 1 for value in labels]


def test_the_tokenizers_template_is_smollm2(pair):
    ft, _ = pair
    assert ft.chat_template == SMOLLM2


@pytest.mark.parametrize("template", [CHATML_GENERATION, SMOLLM2_GENERATION])
def test_generation_blocks_give_transformers_assistant_masks(pair, template):
    from ferrotune.chat import tokenize_conversations

    ft, hf = pair
    chats = conversations()
    out = tokenize_conversations(ft, chats, chat_template=template, on_empty="drop")
    expected = hf.apply_chat_template(chats, chat_template=template, return_dict=True,
                                      return_assistant_tokens_mask=True)  # fmt: skip
    kept = out["kept"]
    assert out["dropped_indices"] == [i for i, m in enumerate(expected["assistant_masks"]) if not any(m)]
    assert out["input_ids"] == [expected["input_ids"][i] for i in kept]
    assert [masked(labels) for labels in out["labels"]] == [expected["assistant_masks"][i] for i in kept]
    for ids, labels in zip(out["input_ids"], out["labels"]):
        assert all(label in (-100, token) for token, label in zip(ids, labels))


def test_message_structure_masks_equal_the_generation_template(pair):
    """No {% generation %} in SmolLM2's template: the masks found from prefixes equal transformers' masks of the same
    template with blocks around every assistant turn."""
    from ferrotune.chat import tokenize_conversations

    ft, hf = pair
    chats = conversations()
    out = tokenize_conversations(ft, chats, on_empty="drop")
    expected = hf.apply_chat_template(chats, chat_template=SMOLLM2_GENERATION, return_dict=True,
                                      return_assistant_tokens_mask=True)  # fmt: skip
    assert out["input_ids"] == [expected["input_ids"][i] for i in out["kept"]]
    assert [masked(labels) for labels in out["labels"]] == [expected["assistant_masks"][i] for i in out["kept"]]
    # The multi-turn conversation learns both answers, each with its end of turn.
    ids, labels = out["input_ids"][-1], out["labels"][-1]
    learned = ft.decode([token for token, label in zip(ids, labels) if label != -100])
    assert learned == "b<|im_end|>\nd e<|im_end|>\n"


def test_loss_modes(pair):
    from ferrotune.chat import tokenize_conversations

    ft, _ = pair
    chat = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d e"}]  # fmt: skip

    def learned(**options) -> str:
        out = tokenize_conversations(ft, [chat[: options.pop("upto", 4)]], **options)
        ids, labels = out["input_ids"][0], out["labels"][0]
        return ft.decode([token for token, label in zip(ids, labels) if label != -100])

    assert learned(loss_on="last_assistant") == "d e<|im_end|>\n"
    assert learned(loss_on="last_assistant", chat_template=SMOLLM2_GENERATION) == "d e<|im_end|>\n"
    everything = tokenize_conversations(ft, [chat], loss_on="all")
    assert everything["labels"][0] == everything["input_ids"][0]
    prompts, completions = [chat[:3]], [chat[3:]]
    out = tokenize_conversations(ft, prompts, completions=completions, loss_on="completion")
    ids, labels = out["input_ids"][0], out["labels"][0]
    assert ft.decode([t for t, label in zip(ids, labels) if label != -100]) == "d e<|im_end|>\n"
    assert ids == ft.apply_chat_template(chat)["input_ids"]


def test_empty_masks_are_errors_or_counted_drops(pair):
    from ferrotune.chat import ChatMaskError, tokenize_conversations

    ft, _ = pair
    no_answer = [{"role": "user", "content": "only a question"}]
    long_prompt = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "answer"}]
    good = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    with pytest.raises(ChatMaskError, match="conversation 1 has no assistant message"):
        tokenize_conversations(ft, [good, no_answer])
    with pytest.raises(ChatMaskError, match="conversation 0 loses its answer to max_length=64"):
        tokenize_conversations(ft, [long_prompt, good], max_length=64)
    out = tokenize_conversations(ft, [long_prompt, good, no_answer], max_length=64, on_empty="drop")
    assert out["dropped"] == 2 and out["dropped_indices"] == [0, 2] and out["kept"] == [1]
    assert len(out["input_ids"]) == 1 and max(len(ids) for ids in out["input_ids"]) <= 64


def test_templates_that_rewrite_earlier_turns_are_refused(pair):
    """A template whose rendering of a turn depends on what follows (here: a marker after the last message only, as
    templates that strip earlier reasoning do) cannot give structure masks: an error, never a wrong mask."""
    from ferrotune.chat import ChatMaskError, tokenize_conversations

    ft, _ = pair
    template = "{% for m in messages %}{{ m.role }}: {{ m.content }}{% if loop.last %} <END>{% endif %}\n{% endfor %}"
    chat = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]  # fmt: skip
    with pytest.raises(ChatMaskError, match="conversation 0: the conversation up to message 1 .* does not tokenize"):
        tokenize_conversations(ft, [chat], chat_template=template)
    # loss_on="all" does not need the structure.
    assert tokenize_conversations(ft, [chat], chat_template=template, loss_on="all")["dropped"] == 0


def test_argument_errors(pair):
    from ferrotune.chat import tokenize_conversations
    from ferrotune.errors import InputTypeError, InvalidArgumentError

    ft, _ = pair
    good = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    with pytest.raises(InvalidArgumentError, match="loss_on"):
        tokenize_conversations(ft, [good], loss_on="assistants")
    with pytest.raises(InvalidArgumentError, match="completions"):
        tokenize_conversations(ft, [good], loss_on="completion")
    with pytest.raises(InputTypeError, match="conversation 1"):
        tokenize_conversations(ft, [good, ["not a message"]])


def test_empty_answers_learn_nothing_and_template_errors_name_the_conversation(pair):
    from ferrotune.chat import ChatTemplateError, tokenize_conversations
    from test_chat_template import MISTRAL

    ft, hf = pair
    chat = [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""},
            {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]  # fmt: skip
    # A block holding the content only: the empty answer's block is empty (transformers' masks, never the rest of
    # the conversation).
    template = (
        "{% for m in messages %}{{ m.role }}: {% if m.role == 'assistant' %}{% generation %}{{ m.content }}"
        "{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}"
    )
    out = tokenize_conversations(ft, [chat], chat_template=template)
    expected = hf.apply_chat_template(chat, chat_template=template, return_dict=True,
                                      return_assistant_tokens_mask=True)  # fmt: skip
    assert masked(out["labels"][0]) == expected["assistant_masks"]
    ids, labels = out["input_ids"][0], out["labels"][0]
    assert ft.decode([t for t, label in zip(ids, labels) if label != -100]).endswith("c")  # not the turns after
    # The prefixes of conversation 1 are rendered in a batch with those of conversation 0: the error names 1.
    good = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    bad = [
        {"role": "user", "content": "q"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "a"},
    ]
    with pytest.raises(ChatTemplateError, match="^conversation 1: Conversation roles must alternate"):
        tokenize_conversations(ft, [good, bad], chat_template=MISTRAL)


def test_characters_boundaries_label_every_token_of_a_split_final_character(pair, gpt2_dir):
    """An answer ending in a character split over several byte-level tokens (emoji, CJK): where the prompt and the
    answer tokenize as prefixes, boundaries='characters' labels the same tokens as boundaries='tokens' (all of them),
    not only the token holding the character's first byte."""
    import ferrotune
    from ferrotune.chat import tokenize_conversations

    template = ("{% for m in messages %}{% if m.role == 'user' %}Q:{{ m.content }}\nA:{% else %}{{ m.content }}"
                "{% endif %}{% endfor %}")  # fmt: skip
    chats = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": answer}]
             for answer in ("ok😀", "ok 你好", "é", "😀😀 x 👨‍👩‍👧")]  # fmt: skip
    for tokenizer in (pair[0], ferrotune.Tokenizer.from_pretrained(gpt2_dir)):
        by_tokens = tokenize_conversations(tokenizer, chats, chat_template=template)
        by_characters = tokenize_conversations(tokenizer, chats, chat_template=template, boundaries="characters")
        assert by_characters == by_tokens


def test_markers_in_template_variables_and_transformers_tokenizers(pair):
    from ferrotune.chat import tokenize_conversations
    from ferrotune.errors import ChatTemplateError

    ft, hf = pair
    chats = conversations()[:6]
    # A transformers tokenizer is taken as ferrotune's (its Rust pipeline and settings).
    assert tokenize_conversations(hf, chats, boundaries="characters") == tokenize_conversations(
        ft, chats, boundaries="characters"
    )
    # The characters that mark {% generation %} blocks are refused in any template variable, not only in messages.
    template = "{% for m in messages %}{{ m.content }}{{ suffix }}{% endfor %}"
    with pytest.raises(ChatTemplateError, match="U\\+FDD0"):
        tokenize_conversations(ft, chats, chat_template=template, loss_on="all", suffix="x\ufdd0y\ufdd1z")
