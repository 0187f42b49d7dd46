"""ssl_bench: a semi-supervised learning benchmark suite (MixMatch, ReMixMatch, FixMatch, AdaMatch, MMA)."""

__version__ = "0.1.0"
