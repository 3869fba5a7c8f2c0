"""The one fine-tuning loop every method shares, work shared between runs, logging."""
