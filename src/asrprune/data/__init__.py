"""Corpora, manifests, features, tokenizer and batching."""
