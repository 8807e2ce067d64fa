"""The base of every error clipsearch reports to a person as one line, without a traceback,
and the translation of other libraries' errors into such lines.

Kept free of heavy imports so the command line can catch these before loading torch.
"""

from __future__ import annotations

import errno


class ClipsearchError(Exception):
    """A failure with a message that says what went wrong and what to do. Every error a
    person can cause (a bad argument, file, model or store) is one of these; anything
    else that reaches the command line is a bug in clipsearch, and says so."""


class WeightsError(ClipsearchError):
    """A model spec that cannot be loaded; the message says what to do."""


def explain(e: BaseException) -> str | None:
    """What to tell a person about an error: clipsearch's own, or one raised by what it
    uses that says something about their setup (the database, the disk, memory); None for
    anything else, which is a bug."""
    if isinstance(e, ClipsearchError):
        return str(e)
    if isinstance(e, MemoryError):
        return "ran out of memory; close other programs, or use a smaller --batch-size"
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {e.filename}" if e.filename else ""
        return f"the disk is full{where}; free some space and run again (nothing committed is lost)"
    if type(e).__module__.startswith("sqlalchemy"):
        return _database(e)
    if isinstance(e, OSError):  # the file system: a missing file, a permission
        return str(e)
    return None


def _database(e: BaseException) -> str:
    orig = getattr(e, "orig", None)
    reason = (str(orig) if orig is not None else str(e)).strip().splitlines()[0]
    if "disk is full" in reason or "disk I/O error" in reason:
        return (
            f"the disk holding the catalog is full or failing ({reason}); free some space and "
            "run again (everything committed before is kept)"
        )
    if "database is locked" in reason:
        return "the catalog stayed locked by another program for 30 s; try again when it is done"
    if "readonly database" in reason or "read-only" in reason:
        return f"the catalog cannot be written ({reason}); check the store folder's permissions"
    return f"catalog error: {reason}"


class TruncationWarning(UserWarning):
    """A text was longer than the model's context and lost its tail (the tokenizer warns,
    the faces say so; here so that they need not import the tokenizer to catch it)."""


class FallbackWarning(UserWarning):
    """A faster way to an answer could not be taken, and the reference way answered: the
    answer is the same, the user may want to know why it was slower."""
