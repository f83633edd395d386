"""PLACEHOLDER: being written; replace this whole file."""
def cross_entropy(*args, **kwargs):
    raise NotImplementedError('cross_entropy')
def log_softmax(*args, **kwargs):
    raise NotImplementedError('log_softmax')
def softmax(*args, **kwargs):
    raise NotImplementedError('softmax')
