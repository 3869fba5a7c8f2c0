"""clgraft: a continual-learning benchmark suite for language models built on skill localization by grafting."""

__version__ = "0.1.0"
