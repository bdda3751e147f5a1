"""Contain a leaked AWS access key, hand its owner a replacement, report what it did."""

__all__ = ["__version__"]

__version__ = "0.1.0"
