"""The prompts shared by training and evaluation, so a model is evaluated as it was trained."""

MATH_PROMPT = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
