"""Naive sequential fine-tuning: train on each task in turn, nothing against forgetting (the lower bound)."""

from clgraft.methods.base import Method


class Naive(Method):
    name = "naive"
    description = "sequential fine-tuning on each task in turn, no protection against forgetting"
    paper = "McCloskey & Cohen 1989, catastrophic interference (the standard lower bound)"
