"""The k15 chat convention: long-CoT models think inside ``<think>…</think>``, then answer.

* Checkpoints k15 writes carry :data:`K15_CHAT_TEMPLATE` (ChatML). Its generation prompt opens the think block
  (``<|im_start|>assistant\\n<think>\\n``), so the model's output is ``reasoning </think> answer``.
  ``enable_thinking=False`` (a chat-template kwarg) closes the block at once, asking for an answer only.
* Earlier assistant turns are rendered without their thinking, as DeepSeek-R1 and Qwen3 do.
* ``<think>`` and ``</think>`` are single added tokens (:func:`ensure_think_tokens`), so vLLM's reasoning parser
  and thinking-token budget act on token ids.
* :func:`split_reasoning` is the one place that separates reasoning from answer in plain text; the evalsuite
  grader, the RL reward and the UI all use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

THINK_START = "<think>"
THINK_END = "</think>"
# vLLM's reasoning config for a thinking budget: the block's markers; the end is forced when the budget is spent
THINKING_MARKERS = {"reasoning_start_str": THINK_START, "reasoning_end_str": THINK_END}
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")

_TEXT_CONTENT = (
    "{%- set content = message['content'] if message['content'] is string else "
    "message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('\\n') -%}"
)
# A vision model's: each image part renders as the model's placeholder, where it stands; text parts as above.
_VISION_CONTENT = (
    "{%- if message['content'] is string -%}{%- set content = message['content'] -%}{%- else -%}"
    "{%- set parts = namespace(text='', prose=false) -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] in ('image', 'image_url') -%}"
    "{%- set parts.text = parts.text + PLACEHOLDER -%}{%- set parts.prose = false -%}"
    "{%- elif part['type'] == 'text' -%}"
    "{%- set parts.text = parts.text + ('\\n' if parts.prose else '') + part['text'] -%}{%- set parts.prose = true -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set content = parts.text -%}{%- endif -%}"
)
_MESSAGES = (
    "{%- if message['role'] == 'assistant' and '</think>' in content -%}"
    "{%- set content = content.split('</think>')[-1].lstrip() -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{%- if enable_thinking is defined and not enable_thinking -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)
K15_CHAT_TEMPLATE = "{%- for message in messages -%}" + _TEXT_CONTENT + _MESSAGES


def k15_chat_template(image_placeholder: str | None = None) -> str:
    """The k15 think template; with a vision model's ``image_placeholder``, image parts render as it, in place (a
    loop over the parts, which vLLM's server reads as the "openai" content format and hands image parts to)."""
    if image_placeholder is None:
        return K15_CHAT_TEMPLATE
    content = _VISION_CONTENT.replace("PLACEHOLDER", json.dumps(image_placeholder))
    return "{%- for message in messages -%}" + content + _MESSAGES


@dataclass(frozen=True)
class Split:
    """A response divided by the convention; ``thinking_closed`` is False when ``</think>`` never came."""

    reasoning: str
    answer: str
    thinking_closed: bool


def split_reasoning(text: str, think_opened_by_prompt: bool = True) -> Split:
    """Separate reasoning from answer in a raw completion.

    ``think_opened_by_prompt``: the prompt ended inside an open think block (the k15 template), so text before
    ``</think>`` is reasoning even without a leading ``<think>``. A response that opens a block itself is
    handled either way. Without a closing tag, an opened block is all reasoning and the answer is empty.
    """
    body = text.lstrip()
    if body.startswith(THINK_START):
        body, think_opened_by_prompt = body[len(THINK_START) :], True
    if THINK_END in body:
        reasoning, _, answer = body.partition(THINK_END)
        return Split(reasoning.strip(), answer.strip(), True)
    if think_opened_by_prompt:
        return Split(body.strip(), "", False)
    return Split("", body.strip(), True)


def ensure_think_tokens(tokenizer: Any, model: Any | None = None) -> int:
    """Add ``<think>``/``</think>`` as single tokens if missing; grow ``model``'s embeddings to match.

    New embedding rows are initialised to the mean of the old ones (transformers' ``mean_resizing``) and the
    vocabulary is padded to a multiple of 64. Returns how many tokens were added.
    """
    from tokenizers import AddedToken

    missing = [t for t in (THINK_START, THINK_END) if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    if model is not None and len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    return len(missing)


def apply_k15_template(tokenizer: Any, image_placeholder: str | None = None) -> None:
    """Give ``tokenizer`` the k15 think template (needs a ChatML vocabulary; with a vision model's
    ``image_placeholder``, the template renders image parts) and the think tokens."""
    vocab = tokenizer.get_vocab()
    absent = [t for t in CHATML_TOKENS if t not in vocab]
    if absent:
        raise ValueError(f"the k15 chat template is ChatML; this tokenizer lacks {', '.join(absent)}")
    ensure_think_tokens(tokenizer)
    tokenizer.chat_template = k15_chat_template(image_placeholder)


def image_placeholder(renderer: Any) -> str | None:
    """What the chat template of ``renderer`` (a processor or tokenizer) renders an image part of a user turn as —
    the text around it rendered with and without the image, the difference taken —; None when it renders nothing
    (a text-only template)."""
    text = [{"type": "text", "text": "k15-text"}]

    def render(content: list[dict[str, str]]) -> str:
        return renderer.apply_chat_template([{"role": "user", "content": content}], tokenize=False)

    with_image, without = render([{"type": "image"}, *text]), render(text)
    start = next((i for i, (a, b) in enumerate(zip(with_image, without, strict=False)) if a != b), len(without))
    end = len(with_image) - (len(without) - start)
    return with_image[start:end] or None
