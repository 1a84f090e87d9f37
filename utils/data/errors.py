"""The error of data that cannot be used: one line naming the place and what was expected."""

__all__ = ["DataError"]


class DataError(Exception):
    """Data that is missing or unreadable; the message names the place and what was expected."""
