"""Errors that are the user's to fix.

Every exception here carries a one-line message that names the problem and
what was expected; the CLI prints it and exits with status 2, without a
traceback.  Anything else escaping lowbit is a bug.
"""


class LowbitError(Exception):
    """Base class of user errors (bad file, bad input, unsupported model).

    The message is kept on one line: control characters that came from a file (a node name
    holding a newline) are written as escapes.
    """

    def __init__(self, *args):
        if args and isinstance(args[0], str):
            args = (_one_line(args[0]),) + args[1:]
        super().__init__(*args)


def _one_line(text: str) -> str:
    text = text.strip()
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class ModelLoadError(LowbitError):
    """The model file is missing, unreadable or not a model lowbit knows."""


class UnsupportedOpError(ModelLoadError):
    """The model uses operators lowbit has no kernel for."""


class InputError(LowbitError):
    """An input array has the wrong shape, dtype or values."""


class ExecutionError(LowbitError):
    """A node could not run on the tensors it was given (names the node and the shapes)."""


class ModelSaveError(LowbitError):
    """The model holds something the .lowbit format cannot store safely (e.g. an object array)."""
