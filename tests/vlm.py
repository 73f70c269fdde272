"""A tiny, randomly initialised vision-language checkpoint that vLLM's CPU build can serve.

Idefics3 (the SmolVLM layout: a SigLIP-style vision tower, pixel-shuffle connector and a Llama text model) with
the SmolLM2 tokenizer. LLaVA is out: vLLM's llava module imports pixtral, whose transformers image processor
needs torchvision, which this environment deliberately lacks; Idefics3's PIL image processor does not.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_TOKEN = "<image>"
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
END_OF_UTTERANCE = "<end_of_utterance>"

# ChatML; list-valued content renders text parts verbatim and each image part as the <image> placeholder
# (vLLM's "openai" content format hands image parts to the template as {"type": "image"}).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] in ('image', 'image_url') %}{{ '<image>' }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_vlm(text_source: Path, out: Path, image_size: int = 56, patch_size: int = 14) -> Path:
    """Write a random Idefics3 model (tiny vision tower + tiny Llama) with ``text_source``'s tokenizer to ``out``.

    Every image becomes one ``image_size`` tile (no splitting) of ``(image_size / patch_size / 2) ** 2`` image
    tokens (4 by default). The text model has two 64-dim heads because vLLM's CPU attention needs a supported
    head size. The image processor is the PIL backend, which ``AutoImageProcessor`` picks without torchvision.
    """
    import torch
    from transformers import AutoConfig, AutoTokenizer, Idefics3Config, Idefics3ForConditionalGeneration
    from transformers.models.idefics3 import Idefics3Processor
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    scale_factor = 2
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(text_source)
    grid_tokens = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [FAKE_IMAGE_TOKEN, IMAGE_TOKEN, END_OF_UTTERANCE, GLOBAL_IMAGE_TOKEN]}
    )
    tokenizer.add_tokens(grid_tokens, special_tokens=True)
    tokenizer.chat_template = CHAT_TEMPLATE

    text_config = AutoConfig.from_pretrained(text_source)
    text_config.update(
        {"num_hidden_layers": 2, "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2,
         "num_key_value_heads": 1, "head_dim": 64, "max_position_embeddings": 1024, "tie_word_embeddings": True,
         "vocab_size": max(text_config.vocab_size, len(tokenizer))}
    )  # fmt: skip
    vision_config = Idefics3VisionConfig(
        image_size=image_size, patch_size=patch_size, hidden_size=128, intermediate_size=256,
        num_hidden_layers=2, num_attention_heads=2,
    )  # fmt: skip
    config = Idefics3Config(
        vision_config=vision_config, text_config=text_config, scale_factor=scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), pad_token_id=text_config.pad_token_id,
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(out)

    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size}
    )
    image_seq_len = (image_size // patch_size) ** 2 // scale_factor**2
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len,
        chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
