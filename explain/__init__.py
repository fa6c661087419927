"""Explanation engine: class-discriminative channel contributions, exemplars, argument sheets."""
