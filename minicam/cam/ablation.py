"""PLACEHOLDER: being written; replace this whole file."""
def ablationcam(*args, **kwargs):
    raise NotImplementedError('ablationcam')
