"""The prompts shared by training and evaluation, so a model is evaluated as it was trained."""

MATH_PROMPT = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."

CODE_PROMPT = (
    "Write a self-contained Python solution to the following problem, with the imports it needs, in one markdown "
    "code block.\n\n{problem}"
)


def prompt_for(grader: str) -> str:
    """The prompt template of a grader's problems: :data:`CODE_PROMPT` for code, else :data:`MATH_PROMPT`."""
    from k15.grading import CODE_GRADERS

    return CODE_PROMPT if grader in CODE_GRADERS else MATH_PROMPT
