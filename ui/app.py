"""The Gradio app: Compare (both modes streaming side by side), Chat, and Results (evalsuite runs)."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from openai import OpenAI

from k15.checkpoint import THINKING_KINDS
from k15.serve.config import ModelNames
from k15.ui.results import SAMPLE_COLUMNS, SUMMARY_COLUMNS, filter_samples, load_runs, sample_details, sample_rows
from k15.ui.streaming import Turn, stream_into

LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
    {"left": "\\(", "right": "\\)", "display": False},
    {"left": "\\[", "right": "\\]", "display": True},
]
FALLBACK_EXAMPLES = ["What is 17 × 23? Put your final answer within \\boxed{}.",
                     "If 3x + 5 = 20, what is x? Put your final answer within \\boxed{}."]  # fmt: skip


def example_prompts(data_dir: Path | None, per_task: int = 2) -> list[list[Any]]:
    """A few problems of MATH-500, AIME and MathVista (with the image when the data has one)."""
    from k15.evalsuite.tasks import get_task

    examples: list[list[Any]] = []
    for name in ("math500", "aime24", "mathvista"):
        try:
            items = get_task(name).items(data_dir, limit=per_task)
        except Exception:  # no data here (offline, no --data-dir): fewer examples, not a broken page
            continue
        for item in items:
            image = None
            if item.image:
                from PIL import Image

                image = Image.open(io.BytesIO(item.image))
            examples.append([item.text, image])
    return examples or [[text, None] for text in FALLBACK_EXAMPLES]


def user_content(prompt: str, image: Any) -> str | list[dict[str, Any]]:
    if image is None:
        return prompt
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": prompt}]


class App:
    """Holds the endpoint and the served models' kinds; builds the Blocks."""

    def __init__(self, endpoint: str, api_key: str | None, results: list[Path], data_dir: Path | None,
                 names: ModelNames | None = None) -> None:  # fmt: skip
        self.names = names or ModelNames()  # the served names, as k15 serve's config sets them
        self.client = OpenAI(base_url=endpoint, api_key=api_key or "unused", max_retries=0, timeout=600)
        self.results = results
        self.data_dir = data_dir
        self.kinds: dict[str, str] = {}
        self.roots: dict[str, str] = {}

    def model_kinds(self) -> dict[str, str]:
        if not self.kinds:
            try:
                served = self.client.models.list().data
            except Exception:
                return {}
            self.kinds = {m.id: (m.model_extra or {}).get("kind", "") for m in served}
            self.roots = {m.id: (m.model_extra or {}).get("root", "") for m in served}
        return self.kinds

    def same_checkpoint_note(self) -> str:
        """A warning for the page when the long and short names serve one checkpoint (no trained models yet)."""
        self.model_kinds()
        long, short = self.roots.get(self.names.long), self.roots.get(self.names.short)
        if not long or long != short:
            return ""
        return (f"**{self.names.long} and {self.names.short} are the same checkpoint** (`{long}`): both sides show "
                "one model, so the modes cannot differ. Train a long-CoT and a long2short model (`make demo`) and "
                "serve them with `k15 serve --long PATH --short PATH`.")  # fmt: skip

    def params(self, model: str, temperature: float, max_tokens: int, budget: int, effort: str) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": temperature, "max_tokens": int(max_tokens)}
        thinks = self.model_kinds().get(model) in THINKING_KINDS
        if budget and thinks:
            params["extra_body"] = {"max_thinking_tokens": int(budget)}
        if self.model_kinds().get(model) == "auto" and effort != "none":
            params["reasoning_effort"] = effort
        return params

    def run_turns(self, turns: list[Turn], conversations: list[list[dict[str, Any]]],
                  params: list[dict[str, Any]]) -> Iterator[None]:  # fmt: skip
        """Stream every turn in its own thread; yield while any runs. Cancelling (Stop) closes the streams."""
        stop = threading.Event()
        threads = [threading.Thread(target=stream_into, args=(self.client, t, c, p, stop), daemon=True)
                   for t, c, p in zip(turns, conversations, params, strict=True)]  # fmt: skip
        for thread in threads:
            thread.start()
        try:
            while any(thread.is_alive() for thread in threads):
                time.sleep(0.1)
                yield
            yield
        finally:
            stop.set()

    def compare(self, prompt: str, image: Any, left: str, right: str, temperature: float, max_tokens: int,
                budget: int, effort: str) -> Iterator[tuple[Any, ...]]:  # fmt: skip
        if not (prompt or "").strip():
            raise gr.Error("Type a problem first.")
        question = {"role": "user", "content": user_content(prompt, image)}
        shown = user_message(prompt, image)
        turns = [Turn(left), Turn(right)]
        params = [self.params(m, temperature, max_tokens, budget, effort) for m in (left, right)]
        for _ in self.run_turns(turns, [[question], [question]], params):
            yield ([shown, *turns[0].messages()], [shown, *turns[1].messages()], turns[0].stats(), turns[1].stats())

    def chat(self, message: str, history: list[dict[str, Any]], mode: str, temperature: float,
             max_tokens: int) -> Iterator[tuple[Any, ...]]:  # fmt: skip
        if not (message or "").strip():
            raise gr.Error("Type a message first.")
        model = {"long": self.names.long, "short": self.names.short, "auto": self.names.auto}[mode]
        # Earlier turns without their thinking (the k15 convention); Gradio may hand content as text parts.
        past = [{"role": m["role"], "content": message_text(m.get("content"))} for m in history
                if not (m.get("metadata") or {}).get("title")]  # fmt: skip
        conversation = [*past, {"role": "user", "content": message}]
        turn = Turn(model)
        start = [*history, {"role": "user", "content": message}]
        for _ in self.run_turns([turn], [conversation], [self.params(model, temperature, max_tokens, 0, "medium")]):
            yield [*start, *turn.messages()], "", turn.stats()

    def load_results(self, dirs_text: str, correctness: str, disagree: bool) -> tuple[Any, ...]:
        dirs = [Path(d) for d in dirs_text.replace(",", " ").split()]
        try:
            rows, plot, samples = load_runs(dirs)
        except (ValueError, OSError) as exc:
            raise gr.Error(str(exc)) from None
        shown = filter_samples(samples, correctness, disagree)
        return rows, str(plot), sample_rows(shown), samples, shown, f"{len(shown)} of {len(samples)} samples"

    def refilter(self, samples: list[dict[str, Any]], correctness: str, disagree: bool) -> tuple[Any, ...]:
        shown = filter_samples(samples or [], correctness, disagree)
        return sample_rows(shown), shown, f"{len(shown)} of {len(samples or [])} samples"

    def build(self) -> gr.Blocks:
        names = [*self.model_kinds()] or [self.names.long, self.names.short, self.names.auto]
        with gr.Blocks(title="k15 — long-CoT vs long2short") as demo:
            gr.Markdown("# k15 · reasoning modes side by side")
            if note := self.same_checkpoint_note():
                gr.Markdown(note, elem_id="same-checkpoint")
            with gr.Tab("Compare"):
                with gr.Row():
                    prompt = gr.Textbox(label="Problem", lines=3, scale=4, elem_id="compare-prompt")
                    image = gr.Image(label="Image (optional)", type="pil", scale=1, height=160)
                with gr.Row():
                    left = gr.Dropdown(names, value=names[0], label="Left model")
                    right = gr.Dropdown(names, value=names[1] if len(names) > 1 else names[0], label="Right model")
                    effort = gr.Dropdown(["high", "medium", "low", "none"], value="medium",
                                         label="reasoning_effort (for the auto model)")  # fmt: skip
                with gr.Row():
                    temperature = gr.Slider(0, 1.5, value=0.6, step=0.05, label="Temperature")
                    max_tokens = gr.Slider(
                        16, 8192, value=1024, step=16, label="Max tokens", elem_id="compare-max-tokens"
                    )
                    budget = gr.Slider(0, 8192, value=0, step=16, label="Thinking budget (0 = none)")
                with gr.Row():
                    go = gr.Button("Compare", variant="primary", elem_id="compare-go")
                    stop = gr.Button("Stop", variant="stop", elem_id="compare-stop")
                with gr.Row():
                    with gr.Column():
                        left_chat = gr.Chatbot(label="Left", latex_delimiters=LATEX, height=460, elem_id="left-chat")
                        left_stats = gr.Markdown(elem_id="left-stats")
                    with gr.Column():
                        right_chat = gr.Chatbot(label="Right", latex_delimiters=LATEX, height=460, elem_id="right-chat")
                        right_stats = gr.Markdown(elem_id="right-stats")
                gr.Examples(example_prompts(self.data_dir), inputs=[prompt, image], label="Examples")
                event = go.click(self.compare, [prompt, image, left, right, temperature, max_tokens, budget, effort],
                                 [left_chat, right_chat, left_stats, right_stats])  # fmt: skip
                stop.click(None, cancels=[event])
            with gr.Tab("Chat"):
                mode = gr.Radio(["long", "short", "auto"], value="long", label="Mode")
                chatbot = gr.Chatbot(label="Conversation", latex_delimiters=LATEX, height=480, elem_id="chat")
                message = gr.Textbox(label="Message", elem_id="chat-input")
                chat_stats = gr.Markdown(elem_id="chat-stats")
                chat_temperature = gr.Slider(0, 1.5, value=0.6, step=0.05, label="Temperature")
                chat_max = gr.Slider(16, 8192, value=1024, step=16, label="Max tokens", elem_id="chat-max-tokens")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="chat-send")
                    chat_stop = gr.Button("Stop", variant="stop")
                    clear = gr.Button("Clear")
                chat_event = send.click(self.chat, [message, chatbot, mode, chat_temperature, chat_max],
                                        [chatbot, message, chat_stats])  # fmt: skip
                chat_stop.click(None, cancels=[chat_event])
                clear.click(lambda: ([], ""), None, [chatbot, chat_stats])
            with gr.Tab("Results"):
                dirs = gr.Textbox(label="evalsuite result directories (space-separated)",
                                  value=" ".join(str(p) for p in self.results), elem_id="results-dirs")  # fmt: skip
                with gr.Row():
                    correctness = gr.Radio(["all", "correct", "wrong"], value="all", label="Correctness")
                    disagree = gr.Checkbox(label="Only problems where the models disagree")
                    load = gr.Button("Load", variant="primary", elem_id="results-load")
                table = gr.Dataframe(headers=SUMMARY_COLUMNS, label="Task × model", elem_id="results-table")
                plot = gr.Image(label="Accuracy against tokens", elem_id="results-plot")
                count = gr.Markdown()
                samples_table = gr.Dataframe(headers=SAMPLE_COLUMNS, label="Samples (select a row)",
                                             elem_id="samples-table")  # fmt: skip
                details = gr.Markdown(latex_delimiters=LATEX, elem_id="sample-details")
                all_samples, shown_samples = gr.State([]), gr.State([])
                load.click(self.load_results, [dirs, correctness, disagree],
                           [table, plot, samples_table, all_samples, shown_samples, count])  # fmt: skip
                for control in (correctness, disagree):
                    control.change(self.refilter, [all_samples, correctness, disagree],
                                   [samples_table, shown_samples, count])  # fmt: skip

                def show(shown: list[dict[str, Any]], event: gr.SelectData) -> str:
                    row = event.index[0] if isinstance(event.index, list | tuple) else event.index
                    return sample_details(shown[row]) if shown and row < len(shown) else ""

                samples_table.select(show, [shown_samples], details)
        return demo


def message_text(content: Any) -> str:
    """The text of a chatbot message's content (a string, or Gradio's list of parts)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in parts if p is not None)


def user_message(prompt: str, image: Any) -> dict[str, Any]:
    """The user's message as shown in a chatbot (the image, when given, is noted rather than re-uploaded)."""
    return {"role": "user", "content": prompt + ("\n\n*(with an image)*" if image is not None else "")}
