"""The package version (one place: aecodec/__init__.py and the release table read it)."""
__version__ = "0.17.1"
