"""tastemaker: music recommendations from listening histories."""

__version__ = "0.1.0"
