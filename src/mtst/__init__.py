"""mtst: a multi-task sentence transformer."""

__version__ = "0.1.0"
