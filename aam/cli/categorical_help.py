"""The ``aam train --categorical-help`` text: which categorical fusion to choose.

One table (:data:`FUSION_GUIDE`) is printed by ``--categorical-help`` and stands in the README
(:func:`markdown_table`; a test keeps the two equal). Its fusion names are the registry's
(``aam.models.fusion.FUSIONS``).
"""

from __future__ import annotations

# (question, what to pass, why / notes)
FUSION_GUIDE = (
    ("Is the effect of the metadata simple (a category shifts the target a bit)?",
     "--categorical-fusion concat",
     "pooled sequence vector + category embeddings -> Linear; cheap, a strong default"),
    ("Does each category mainly shift or stretch the prediction (e.g. per-site offsets)?",
     "--categorical-fusion concat --conditional-output-scaling COLUMN",
     "a learned per-category scale and shift of the prediction, initialised to 1 and 0; with "
     "--target-transform zscore-category --normalize-by COLUMN the shift is already removed, "
     "so scaling the same column is redundant"),
    ("Should the model decide per sample how much to trust sequences vs metadata?",
     "--categorical-fusion gmu",
     "gated multimodal unit; gate values are logged to TensorBoard"),
    ("Do categories change which ASVs matter (position-specific effects, e.g. a category x "
     "clade interaction)?",
     "--categorical-fusion cross-attention [--cross-attn-heads 8]",
     "every ASV attends to several tokens per categorical column; the attention weights reach "
     "TensorBoard as an image (heads x category tokens); heads must divide the embedding "
     "dimension"),
    ("Are samples very rich (thousands of ASVs, large --token-limit)?",
     "--categorical-fusion perceiver [--perceiver-num-latents 16 --perceiver-num-layers 2]",
     "learned latents read the ASV and metadata tokens; cost grows linearly with ASVs"),
    ("None of these?",
     "--categorical-fusion add",
     "sums the category embeddings onto every ASV position"),
)

_TITLE = "Choosing how metadata categories (--categorical-columns) enter the model"
_FOOTER = ("Related: --categorical-lr LR trains embeddings, fusion and output scales at their own "
           "learning rate (useful with --freeze-base). Without --categorical-columns no fusion "
           "is built.")


def help_text() -> str:
    """The text ``aam train --categorical-help`` prints."""
    import textwrap

    lines = [_TITLE, "=" * len(_TITLE), ""]
    for question, flags, notes in FUSION_GUIDE:
        lines += textwrap.wrap(question, 96)
        lines += [f"  yes -> {flags}"]
        lines += textwrap.wrap(f"({notes})", 88, initial_indent=" " * 9,
                               subsequent_indent=" " * 10)
        lines.append("")
    lines += textwrap.wrap(_FOOTER, 96)
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The same guide as the README's Markdown table."""
    rows = ["| question | fusion | notes |", "|---|---|---|"]
    rows += [f"| {q} | `{f}` | {n} |" for q, f, n in FUSION_GUIDE]
    return "\n".join(rows) + "\n"


CATEGORICAL_HELP = help_text()
