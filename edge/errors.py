"""Errors the edge raises; each message names the thing at fault and what was expected."""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error raised by the edge's own code."""


class ModelIntegrityError(EdgeError):
    """A model file is not the one the registry lists (sha256 mismatch) or cannot be used."""


class ModelNotFoundError(EdgeError):
    """A model is not in the registry, or its file is in none of the places searched."""


class SourceError(EdgeError):
    """A video source cannot be opened or read."""
