"""Victims and parasites, trained deterministically once and cached as safetensors."""
