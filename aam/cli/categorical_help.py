"""The ``aam train --categorical-help`` text: which categorical fusion to choose."""

CATEGORICAL_HELP = """\
Choosing how metadata categories (--categorical-columns) enter the model
========================================================================

Is the effect of the metadata simple (a category shifts the target a bit)?
  yes -> --categorical-fusion concat
         (pooled sequence vector + category embeddings -> Linear; cheap, a strong default)

Does each category mainly shift or stretch the prediction (e.g. per-site offsets)?
  yes -> --categorical-fusion concat --conditional-output-scaling COLUMN
         (a learned per-category scale and shift of the prediction, initialised to 1 and 0;
          with --target-transform zscore-category --normalize-by COLUMN the shift is already
          removed, so scaling the same column is redundant)

Should the model decide per sample how much to trust sequences vs metadata?
  yes -> --categorical-fusion gmu
         (gated multimodal unit; gate values are logged to TensorBoard)

Do categories change which ASVs matter (position-specific effects, e.g. a category x clade
interaction)?
  yes -> --categorical-fusion cross-attention [--cross-attn-heads 8]
         (every ASV attends to several tokens per categorical column; attention statistics
          are logged; heads must divide the embedding dimension)

Are samples very rich (thousands of ASVs, large --token-limit)?
  yes -> --categorical-fusion perceiver [--perceiver-num-latents 16 --perceiver-num-layers 2]
         (learned latents read the ASV and metadata tokens; cost grows linearly with ASVs)

Otherwise --categorical-fusion add sums the category embeddings onto every ASV position.

Related: --categorical-lr LR trains embeddings, fusion and output scales at their own learning
rate (useful with --freeze-base). Without --categorical-columns no fusion is built.
"""
