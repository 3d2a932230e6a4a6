"""pbdtui: terminal console and engine for an auction-market strategy on Bybit perpetuals."""

__version__ = "0.1.0"  # keep equal to pyproject.toml; installed copies read the package metadata
