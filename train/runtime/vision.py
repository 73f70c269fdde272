"""Vision-language models on the trainer's side (issue 14): the model's processor builds image prompts — the ids vLLM
continues from, one placeholder per image that vLLM expands itself, and the expanded ids the trainer scores — and
the pixel inputs of a batch for the forward pass, so the trainer's log-probs are those of what vLLM sampled; and
the vision tower, frozen by config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from k15.checkpoint import is_multimodal
from k15.images import open_image

# Where models keep their vision tower: Idefics3 / SmolVLM, Qwen2-VL / Qwen2.5-VL, LLaVA-style models
VISION_TOWERS = ("vision_model", "visual", "vision_tower")


class VisionInputs:
    """A vision-language model's processor (with the k15 template), for prompts with images and pixel inputs."""

    def __init__(self, processor: Any, placeholder: str) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        ids = set(self.tokenizer(placeholder, add_special_tokens=False)["input_ids"])
        if (image_token := getattr(processor, "image_token_id", None)) is not None:
            ids.add(int(image_token))
        # Never sampled: a generated placeholder would not match the images (vLLM and the model both refuse it).
        self.placeholder_ids = sorted(ids)

    def prompt(self, text: str, images: Sequence[str]) -> tuple[list[int], list[int]]:
        """``images`` then ``text`` as a user turn in the k15 template, ending with the generation prompt: the ids the
        engine continues from (one placeholder per image) and the ids the model scores (the processor's, with each
        placeholder expanded to the image's tokens, as vLLM expands them)."""
        content = [*({"type": "image"} for _ in images), {"type": "text", "text": text}]
        rendered = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        engine = self.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        pictures = [[open_image(reference) for reference in images]]
        model = self.processor(text=[rendered], images=pictures, add_special_tokens=False)["input_ids"][0]
        return list(engine), [int(t) for t in model]

    def pixel_inputs(self, images: Sequence[Sequence[str]], dtype: torch.dtype) -> dict[str, Tensor]:
        """The image processor's inputs for a batch whose sequence i shows ``images[i]`` (none for a text row),
        floating-point ones in ``dtype``."""
        batch = [[open_image(reference) for reference in references] for references in images]
        inputs = self.processor.image_processor(images=batch, return_tensors="pt")
        return {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}


def load_vision(path: Path) -> VisionInputs:
    """The processor of the vision-language checkpoint at ``path`` with the k15 template, whose image parts render
    as the placeholder the checkpoint's own template renders (:func:`k15.chat.image_placeholder`)."""
    from transformers import AutoProcessor

    from k15.chat import apply_k15_template, image_placeholder

    processor = AutoProcessor.from_pretrained(path)
    if getattr(processor, "chat_template", None) is None:
        processor.chat_template = processor.tokenizer.chat_template
    placeholder = image_placeholder(processor) if processor.chat_template else None
    if placeholder is None:
        raise ValueError(f"{path}: a vision model whose chat template renders no image placeholder; give it the "
                         "template of its base model")  # fmt: skip
    apply_k15_template(processor.tokenizer, placeholder)
    processor.chat_template = processor.tokenizer.chat_template
    return VisionInputs(processor, placeholder)


def load_k15_tokenizer(path: Path) -> tuple[Any, VisionInputs | None]:
    """The checkpoint's tokenizer with the k15 think template, and for a vision-language model (a ``vision_config``
    in its config) its processor (:func:`load_vision`, whose tokenizer it is), else None."""
    from transformers import AutoTokenizer

    from k15.chat import apply_k15_template

    if is_multimodal(path):
        vision = load_vision(path)
        return vision.tokenizer, vision
    tokenizer = AutoTokenizer.from_pretrained(path)
    apply_k15_template(tokenizer)
    return tokenizer, None


def freeze_vision_tower(model: Any, name: str) -> int:
    """Stop training ``model``'s vision tower (its parameters get ``requires_grad=False``, so the optimizer never
    holds them); returns their count. ValueError when the model has none."""
    for owner in (getattr(model, "model", None), model):
        tower = next((getattr(owner, a) for a in VISION_TOWERS if isinstance(getattr(owner, a, None), torch.nn.Module)),
                     None)  # fmt: skip
        if tower is not None:
            tower.requires_grad_(False)
            return sum(p.numel() for p in tower.parameters())
    raise ValueError(f"freeze_vision_tower: {name} has no vision tower (looked for {', '.join(VISION_TOWERS)})")


def check_images(rows_with_images: int, data: str | Path, model: str, sees_images: bool) -> None:
    """ValueError when ``data`` has rows with images and the model cannot see them (a text-only model)."""
    if rows_with_images and not sees_images:
        raise ValueError(
            f"{data}: {rows_with_images} rows have images, and {model} is a text-only model (no "
            "vision_config in its config.json); train a vision-language model, or drop the images"
        )
