"""Data layer: readers, prepared data, tokens, metadata encodings, batches, splits, simulator."""
