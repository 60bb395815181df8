"""Atelier board: a real-time board for participatory workshops."""

__version__ = "0.1.0"
