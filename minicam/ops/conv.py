"""PLACEHOLDER: being written; replace this whole file."""
def conv2d(*args, **kwargs):
    raise NotImplementedError('conv2d')
