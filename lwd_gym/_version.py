"""The package version, declared once (pyproject reads it; checkpoints record it)."""
__version__ = "0.1.0"
