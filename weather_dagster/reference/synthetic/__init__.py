"""Offline stand-in for the public sources: a deterministic atmosphere written in the real formats."""
