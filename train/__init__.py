"""k15 train: Kimi k1.5 long-CoT reinforcement learning (DeepSpeed trainer, vLLM rollouts) and long2short."""
