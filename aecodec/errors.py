"""The one exception type users see: a bad input or I/O problem, reported as one line."""


class AecError(ValueError):
    """Raised for invalid input (image, bitstream, options) or I/O failures; the CLI exits 1."""
