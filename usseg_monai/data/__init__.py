"""Dataset converters, splits and the synthetic phantom."""
