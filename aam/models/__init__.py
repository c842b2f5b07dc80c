"""Models: nucleotide/ASV/sample encoders, pretraining heads, fusion registry, predictor."""
