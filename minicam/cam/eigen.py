"""PLACEHOLDER: being written; replace this whole file."""
def eigencam(*args, **kwargs):
    raise NotImplementedError('eigencam')
def eigengradcam(*args, **kwargs):
    raise NotImplementedError('eigengradcam')
