"""PLACEHOLDER: op cases for softmax, log_softmax, cross_entropy, batch_norm, dropout, interpolate (being written)."""
CASES = []
