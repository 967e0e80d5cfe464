"""Checking answers and sets: the matcher, trajectory verification, format validation."""
