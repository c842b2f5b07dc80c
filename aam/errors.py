"""User-fixable errors: entry points print their one-line message and exit 2."""


class InputError(ValueError):
    """A problem with the user's input (file, column, sample or setting) that the user can fix.

    The message is one line: what is wrong, the offending value(s), where it came from, and how
    to fix it.
    """


def first_items(items, n: int = 5) -> str:
    """Format a count plus the first ``n`` items of a collection for an error message."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:n])
    more = ", ..." if len(items) > n else ""
    return f"{len(items)} (first {min(n, len(items))}: {shown}{more})"
