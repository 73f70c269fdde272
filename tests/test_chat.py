from pathlib import Path

import pytest

from k15.chat import K15_CHAT_TEMPLATE, apply_k15_template, ensure_think_tokens, split_reasoning


@pytest.mark.parametrize(
    ("text", "reasoning", "answer", "closed"),
    [
        ("Let me add.\n2+2=4</think>\n\nThe answer is 4.", "Let me add.\n2+2=4", "The answer is 4.", True),
        ("<think>hmm</think>42", "hmm", "42", True),
        ("still thinking, cut off", "still thinking, cut off", "", False),
        ("a</think>b</think>c", "a", "b</think>c", True),  # the first close ends thinking
    ],
)
def test_split_reasoning_with_think_opened_by_prompt(text: str, reasoning: str, answer: str, closed: bool) -> None:
    split = split_reasoning(text)
    assert (split.reasoning, split.answer, split.thinking_closed) == (reasoning, answer, closed)


def test_split_reasoning_for_a_model_without_thinking() -> None:
    split = split_reasoning("Paris.", think_opened_by_prompt=False)
    assert (split.reasoning, split.answer, split.thinking_closed) == ("", "Paris.", True)
    opened_itself = split_reasoning("<think>x", think_opened_by_prompt=False)
    assert (opened_itself.reasoning, opened_itself.thinking_closed) == ("x", False)


@pytest.fixture(scope="module")
def tokenizer(default_model: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model)
    apply_k15_template(tok)
    return tok


def test_default_model_has_single_think_tokens(tokenizer) -> None:
    ids = tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    assert len(set(ids)) == 2 and tokenizer.unk_token_id not in ids
    assert tokenizer("<think>x</think>", add_special_tokens=False).input_ids[0] == ids[0]
    assert ensure_think_tokens(tokenizer) == 0  # already present: nothing added


def test_template_opens_thinking_and_drops_old_thoughts(tokenizer) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "<think>one plus one</think>\n\n2"},
        {"role": "user", "content": "and 2+2?"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n"
        "<|im_start|>assistant\n2<|im_end|>\n<|im_start|>user\nand 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n"
    )
    no_think = tokenizer.apply_chat_template(
        messages[:2], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_template_joins_text_parts(tokenizer) -> None:
    content = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
    assert text == "<|im_start|>user\na\nb<|im_end|>\n"
    assert tokenizer.chat_template == K15_CHAT_TEMPLATE


def test_template_needs_chatml() -> None:
    class NoChatML:
        def get_vocab(self) -> dict[str, int]:
            return {"<s>": 0}

    with pytest.raises(ValueError, match=r"lacks <\|im_start\|>"):
        apply_k15_template(NoChatML())
