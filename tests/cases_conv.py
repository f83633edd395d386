"""PLACEHOLDER: op cases for unfold, fold, conv2d and the pools (being written)."""
CASES = []
