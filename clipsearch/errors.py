"""The base of every error clipsearch reports to a person as one line, without a traceback.

Kept free of heavy imports so the command line can catch these before loading torch.
"""


class ClipsearchError(Exception):
    """A failure with a message that says what went wrong and what to do."""
