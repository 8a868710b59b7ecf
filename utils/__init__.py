"""Shared code of the MAH and MMHH reproductions: metrics, data, models, losses, training."""
