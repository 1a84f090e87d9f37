"""The words of a one-line error: what of a library's exception goes into it."""

__all__ = ["first_line"]


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when it has none (an
    EOFError of a truncated file says nothing)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
