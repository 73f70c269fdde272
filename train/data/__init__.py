"""Training data: prompt-set and trace formats, the demo task, teacher warm-up traces and curation."""
