"""vLLM reasoning parser ``k15``, loaded by each vLLM server through ``--reasoning-parser-plugin``.

DeepSeek-R1's rules (think block opened by the prompt, closed by ``</think>``), except for counting: vLLM's
counter only sees tokens between a generated ``<think>`` and ``</think>``, which a k15 prompt-opened block
never has, so ``usage.completion_tokens_details.reasoning_tokens`` would read 0.
"""

from collections.abc import Sequence

from vllm.reasoning import ReasoningParserManager
from vllm.reasoning.deepseek_r1_reasoning_parser import DeepSeekR1ReasoningParser


@ReasoningParserManager.register_module("k15")
class K15ReasoningParser(DeepSeekR1ReasoningParser):
    def count_reasoning_tokens(self, token_ids: Sequence[int]) -> int:
        """Generated tokens before the first ``</think>`` (a ``<think>`` the model writes itself is not counted)."""
        count = 0
        for token_id in token_ids:
            if token_id == self.end_token_id:
                break
            count += token_id != self.start_token_id
        return count
