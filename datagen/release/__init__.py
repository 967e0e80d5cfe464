"""Releasing a build: choose rows (dedup, splits, decontamination), stage, card, export, Hub."""
