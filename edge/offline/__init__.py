"""Offline: replay and evaluation on files, synthetic scenes with ground truth."""
