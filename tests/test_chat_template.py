"""``apply_chat_template`` rendered in Rust against transformers' Jinja2 rendering: the SmolLM2 template and templates
in the styles of Llama-3, Mistral, Gemma, Phi-3, Qwen2.5 (tools) and ChatML with ``{% generation %}`` blocks, on LIMA
conversations and edge cases: identical strings, ids, assistant masks and errors."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import require_data_dir

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are "
    "supported!') }}{% endif %}{% endfor %}"
)
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)
PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + "
    "'<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)
QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first)
        or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
CHATML_GENERATION = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{% else %}"
    "{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Whitespace control around generation tags, namespaces, loop controls, Python methods, filters and tests.
MIXED = """{%- set ns = namespace(found=false, count=0) -%}
{%- for message in messages -%}
  {%- if message.role == 'system' -%}{%- set ns.found = true -%}{%- continue -%}{%- endif -%}
  {%- set ns.count = ns.count + 1 %}
  {{ message.role | upper }}: {% if message.role == 'assistant' %}
  {%- generation -%}
    {{ message.content.strip() }}
  {%- endgeneration %}
  {% else %}{{ message.content | trim }}
  {% endif %}
  {%- if loop.index > 6 %}{% break %}{% endif %}
{%- endfor -%}
{{ 'SYSTEM' if ns.found else 'NONE' }} {{ ns.count }} {{ messages | length }} {{ messages[0].content[:5] | tojson }}
{{- messages[0].content.startswith('W') }} {{ messages[-1].role.title() }} {{ (messages | first).keys() | list }}
{{- messages[0].get('name', 'anon') }} {{ messages[0].content.split(' ')[:2] | join('|') }} {{ 3 / 2 }} {{ 7 // 2 }}
{{- messages[0].content.replace('a', 'A')[:10] }} {{ message is defined }} {{ [1, 2] | tojson }}
{{- (messages | selectattr('role', 'equalto', 'user') | list | length) }}
{{- messages | map(attribute='role') | join(',') }}
{% if add_generation_prompt %}ASSISTANT: {% endif %}"""

TEMPLATES = {"llama3": LLAMA3, "phi3": PHI3, "qwen25": QWEN25, "chatml_generation": CHATML_GENERATION,
             "mixed": MIXED}  # fmt: skip
ALTERNATING = {"mistral": MISTRAL, "gemma": GEMMA}  # templates that refuse system messages


def smollm_dir():
    path = require_data_dir() / "tokenizers" / "smollm2-135m-instruct"
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"SmolLM2 tokenizer not found at {path}")
    return path


@pytest.fixture(scope="module")
def pair():
    import ferrotune
    import transformers

    folder = smollm_dir()
    return ferrotune.Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


def lima(count: int) -> list[list[dict]]:
    path = require_data_dir() / "sft" / "lima.jsonl"
    if not path.is_file():
        pytest.skip(f"LIMA not found at {path}")
    conversations = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            conversations.append(json.loads(line)["messages"])
            if len(conversations) == count:
                break
    return conversations


EDGE_CASES = [
    [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
    [{"role": "user", "content": "你好，世界 🌍 emoji ✨ and CJK 日本語"},
     {"role": "assistant", "content": "こんにちは 👋"}],
    [{"role": "user", "content": "Jinja in content: {{ x }} {% if %} {# c #}"},
     {"role": "assistant", "content": "control tokens: <|im_end|> <|im_start|> [INST] </s> <eos>"}],
    [{"role": "user", "content": "  padded \n\n spaces \t "}, {"role": "assistant", "content": "\nline\n"}],
    [{"role": "user", "content": "Write 'quotes' and \"doubles\" and back\\slash", "name": "ann"},
     {"role": "assistant", "content": "ok", "extra": None}],
]  # fmt: skip


def with_system(conversations: list[list[dict]]) -> list[list[dict]]:
    system = {"role": "system", "content": "You are a terse assistant."}
    return [[system, *c] if i % 2 else c for i, c in enumerate(conversations)]


def conversations_for(name: str) -> list[list[dict]]:
    conversations = lima(24) + EDGE_CASES
    return conversations if name in ALTERNATING else with_system(conversations)


@pytest.mark.parametrize("name", [*TEMPLATES, *ALTERNATING])
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_rendered_strings_and_ids_equal_transformers(pair, name, add_generation_prompt):
    ft, hf = pair
    template = {**TEMPLATES, **ALTERNATING}[name]
    conversations = conversations_for(name)
    options = {"chat_template": template, "add_generation_prompt": add_generation_prompt}
    expected = hf.apply_chat_template(conversations, tokenize=False, **options)
    assert ft.apply_chat_template(conversations, tokenize=False, **options) == expected
    assert ft.apply_chat_template(conversations[3], tokenize=False, **options) == expected[3]
    ids = hf.apply_chat_template(conversations, tokenize=True, return_dict=False, **options)
    assert ft.apply_chat_template(conversations, tokenize=True, return_dict=False, **options) == ids


def test_the_tokenizers_own_template(pair):
    ft, hf = pair
    assert ft.chat_template == hf.chat_template and ft.chat_template
    conversations = with_system(lima(16) + EDGE_CASES)
    for options in ({}, {"add_generation_prompt": True}, {"return_dict": True, "return_tensors": "pt", "padding": True},
                    {"truncation": True, "max_length": 64}):  # fmt: skip
        got, expected = (
            ft.apply_chat_template(conversations, **options),
            hf.apply_chat_template(conversations, **options),
        )
        if isinstance(expected, list):
            assert got == expected, options
        else:
            assert set(got) == set(expected)
            for key in expected:
                left, right = got[key], expected[key]
                assert (left if isinstance(left, list) else left.tolist()) == (
                    right if isinstance(right, list) else right.tolist()
                ), (options, key)


@pytest.mark.parametrize("name", ["chatml_generation", "mixed"])
@pytest.mark.parametrize("return_tensors", [None, "pt"])
def test_assistant_masks_equal_transformers(pair, name, return_tensors):
    ft, hf = pair
    conversations = with_system(lima(12) + EDGE_CASES)
    options = {"chat_template": TEMPLATES[name], "return_dict": True, "return_assistant_tokens_mask": True,
               "return_tensors": return_tensors, "padding": bool(return_tensors)}  # fmt: skip
    expected = hf.apply_chat_template(conversations, **options)
    got = ft.apply_chat_template(conversations, **options)
    for key in ("input_ids", "attention_mask", "assistant_masks"):
        left, right = got[key], expected[key]
        if return_tensors:
            assert left.dtype == right.dtype and left.tolist() == right.tolist(), key
        else:
            assert left == right, key
    masks = expected["assistant_masks"]
    assert any(sum(row) for row in (masks.tolist() if return_tensors else masks))
    # One conversation, not batched: a flat mask.
    single = ft.apply_chat_template(conversations[0], chat_template=TEMPLATES[name], return_dict=True,
                                    return_assistant_tokens_mask=True)  # fmt: skip
    reference = hf.apply_chat_template(conversations[0], chat_template=TEMPLATES[name], return_dict=True,
                                       return_assistant_tokens_mask=True)  # fmt: skip
    assert single["assistant_masks"] == reference["assistant_masks"]
    # Truncation into the assistant's text.
    options = {**options, "truncation": True, "max_length": 40}
    got, expected = ft.apply_chat_template(conversations, **options), hf.apply_chat_template(conversations, **options)
    left, right = got["assistant_masks"], expected["assistant_masks"]
    assert (left.tolist() if return_tensors else left) == (right.tolist() if return_tensors else right)


def test_tools_documents_and_extra_variables(pair):
    ft, hf = pair
    tools = [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & \"later\"",
                                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                         "required": ["city"]}}},
    ]  # fmt: skip

    def multiply(x: float, y: float):
        """
        Multiply two numbers.

        Args:
            x: The first number.
            y: The second number.
        """
        return x * y

    conversation = [
        {"role": "user", "content": "Weather in Paris, and 6*7?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": 1.5}}}]},
        {"role": "tool", "content": "22°C"},
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "22°C and 42."},
    ]  # fmt: skip
    for tool_list in (tools, [multiply], None):
        options = {"chat_template": QWEN25, "tools": tool_list, "tokenize": False}
        assert ft.apply_chat_template(conversation, **options) == hf.apply_chat_template(conversation, **options)
    template = "{{ greeting }} {{ documents | tojson }} {{ eos_token }} {{ bos_token }} {{ messages | length }}"
    options = {"chat_template": template, "tokenize": False, "documents": [{"title": "T", "text": "x"}],
               "greeting": "hi", "eos_token": "OVERRIDDEN"}  # fmt: skip
    assert ft.apply_chat_template(conversation, **options) == hf.apply_chat_template(conversation, **options)


def test_continue_final_message(pair):
    ft, hf = pair
    conversation = [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi, I am "}]
    for template in (QWEN25, LLAMA3, CHATML_GENERATION):
        options = {"chat_template": template, "continue_final_message": True}
        assert ft.apply_chat_template(conversation, tokenize=False, **options) == hf.apply_chat_template(
            conversation, tokenize=False, **options
        )
        assert ft.apply_chat_template(conversation, **options) == hf.apply_chat_template(conversation, **options)


@pytest.mark.parametrize(
    ("template", "conversation", "message"),
    [
        (MISTRAL, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
         "Conversation roles must alternate user/assistant/user/assistant/..."),
        (GEMMA, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "System role not supported"),
    ],
)  # fmt: skip
def test_template_errors_carry_transformers_message_and_the_conversation(pair, template, conversation, message):
    import jinja2
    from ferrotune.errors import ChatTemplateError

    ft, hf = pair
    good = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    with pytest.raises(jinja2.TemplateError, match=message):
        hf.apply_chat_template([good, conversation], chat_template=template, tokenize=False)
    with pytest.raises(ChatTemplateError, match=f"^conversation 1: {message}") as error:
        ft.apply_chat_template([good, conversation], chat_template=template, tokenize=False)
    assert isinstance(error.value, ValueError)


def test_argument_errors(pair):
    from ferrotune.errors import ChatTemplateError, InvalidArgumentError, InvalidInputError

    ft, _ = pair
    conversation = [{"role": "user", "content": "u"}]
    with pytest.raises(InvalidInputError, match="empty conversation"):
        ft.apply_chat_template([])
    with pytest.raises(InvalidArgumentError, match="return_dict=True"):
        ft.apply_chat_template(conversation, tokenize=False, return_assistant_tokens_mask=True)
    with pytest.raises(InvalidArgumentError, match="not compatible"):
        ft.apply_chat_template(conversation, add_generation_prompt=True, continue_final_message=True)
    with pytest.raises(ChatTemplateError):
        ft.apply_chat_template(conversation, chat_template="{% for m in messages %}{{ m.content }")
    with pytest.raises(InvalidArgumentError, match="sanitize_control_tokens"):
        ft.apply_chat_template(conversation, sanitize_control_tokens=True)
    # A message that contains itself is refused before the conversion could exhaust the stack.
    from ferrotune.errors import InputTypeError

    looped = {"role": "user", "content": "u"}
    looped["extra"] = [looped]
    with pytest.raises(InputTypeError, match="nested more than 64 levels"):
        ft.apply_chat_template([looped], tokenize=False)


def test_no_generation_block_warns_as_transformers(pair, caplog):
    ft, _ = pair
    logger = logging.getLogger("transformers.tokenization_utils_base")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with caplog.at_level(logging.WARNING, logger="transformers.tokenization_utils_base"):
            out = ft.apply_chat_template([{"role": "user", "content": "u"}], chat_template=PHI3 + " ",
                                         return_dict=True, return_assistant_tokens_mask=True)  # fmt: skip
    finally:
        logger.setLevel(level)
    assert "does not contain `{% generation %}` keyword" in caplog.text
    assert out["assistant_masks"] == [0] * len(out["input_ids"])


def test_named_templates():
    import ferrotune

    tokenizer = ferrotune.Tokenizer.from_pretrained(smollm_dir())
    tokenizer.chat_template = {"default": "D{{ messages | length }}", "tool_use": "T{{ tools | length }}"}
    conversation = [{"role": "user", "content": "u"}]
    assert tokenizer.apply_chat_template(conversation, tokenize=False) == "D1"
    assert tokenizer.apply_chat_template(conversation, tools=[{"a": 1}], tokenize=False) == "T1"
    assert tokenizer.apply_chat_template(conversation, chat_template="tool_use", tools=[], tokenize=False) == "T0"
