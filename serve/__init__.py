"""k15 serve: the real vLLM OpenAI server hosting k15 checkpoints behind one endpoint."""
