"""k15 ui: a Gradio app comparing the reasoning modes side by side and browsing evalsuite results."""
