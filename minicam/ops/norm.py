"""PLACEHOLDER: being written; replace this whole file."""
def batch_norm(*args, **kwargs):
    raise NotImplementedError('batch_norm')
def dropout(*args, **kwargs):
    raise NotImplementedError('dropout')
