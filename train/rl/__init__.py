"""Kimi k1.5 RL (§2.3–2.6): the mirror-descent trainer, its loss and rewards, vLLM rollouts with in-memory weight
sync, partial rollouts, curriculum and prioritized sampling."""
