"""User-fixable errors: entry points print their one-line message and exit 2."""


class InputError(ValueError):
    """A problem with the user's input (file, column, sample or setting) that the user can fix.

    The message is one line: what is wrong, the offending value(s), where it came from, and how
    to fix it.
    """


SHOWN_CHARS = 20


def short_text(value, limit: int = SHOWN_CHARS) -> str:
    """``value`` as shown in a message: cut to ``limit`` characters with an ellipsis (a 150-nt
    sequence used as an ID keeps the message one short line)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def first_items(items, n: int = 5) -> str:
    """Format a count plus the first ``n`` items of a collection (each shortened) for a
    message."""
    items = list(items)
    # IDs are cut (32: MD5 feature IDs stay whole); paths are shown whole
    shown = ", ".join(str(x) if "/" in str(x) else short_text(x, 32) for x in items[:n])
    more = ", ..." if len(items) > n else ""
    return f"{len(items)} (first {min(n, len(items))}: {shown}{more})"
