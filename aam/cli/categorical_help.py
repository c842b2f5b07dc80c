"""The ``aam train --categorical-help`` text: which categorical fusion to choose.

One table is printed by ``--categorical-help`` and stands in ``config/README.md``
(:func:`markdown_table`; a test keeps the two equal). Its rows are the ``GUIDE`` of every fusion
in the registry (``aam.models.fusion.FUSIONS``), so a new fusion documents itself in its own class.
"""

from __future__ import annotations

def fusion_guide() -> list[tuple[str, str, str]]:
    """(question, flags, notes) rows of every registered fusion's ``GUIDE``, by rank."""
    from aam.models.fusion import FUSIONS

    rows = sorted(row for cls in FUSIONS.values() for row in cls.GUIDE)
    return [row[1:] for row in rows]


_TITLE = "Choosing how metadata categories (--categorical-columns) enter the model"
_FOOTER = ("Related: --categorical-lr LR trains embeddings, fusion and output scales at their own "
           "learning rate (useful with --freeze-base). Without --categorical-columns no fusion "
           "is built.")


def help_text() -> str:
    """The text ``aam train --categorical-help`` prints."""
    import textwrap

    lines = [_TITLE, "=" * len(_TITLE), ""]
    for question, flags, notes in fusion_guide():
        lines += textwrap.wrap(question, 96)
        lines += [f"  yes -> {flags}"]
        lines += textwrap.wrap(f"({notes})", 88, initial_indent=" " * 9,
                               subsequent_indent=" " * 10)
        lines.append("")
    lines += textwrap.wrap(_FOOTER, 96)
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The same guide as the Markdown table in ``config/README.md``."""
    rows = ["| question | fusion | notes |", "|---|---|---|"]
    rows += [f"| {q} | `{f}` | {n} |" for q, f, n in fusion_guide()]
    return "\n".join(rows) + "\n"

