"""Graft files, the sparse-mask search (localization), composing grafts, merging task vectors."""
