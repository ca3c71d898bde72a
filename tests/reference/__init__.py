"""Literal re-implementations of the official modules, used as the baseline in equivalence tests and benches."""
