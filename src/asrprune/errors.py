"""The one exception type that reaches users: a message naming the file, field or value."""


class AsrpruneError(Exception):
    """A problem with the user's input or environment, explained in the message.

    The CLI prints it without a traceback; anything else is a bug and keeps its traceback.
    """
