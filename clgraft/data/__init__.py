"""Tasks and their data: the registry of task and stream YAML, loading and k-shot sampling, the data pack,
batches, prompt templates, and the references they cite."""
