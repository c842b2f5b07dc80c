"""Attention All Microbes: nucleotide -> ASV -> sample attention for 16S microbiome data."""

__version__ = "0.1.0"
