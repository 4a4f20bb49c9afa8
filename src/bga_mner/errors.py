"""The one base class of the errors that bad input causes (the bottom of the layering: imports nothing).

A :class:`UserError` is a problem with what the user gave (a file, a line of it, a config value),
not a bug: its message says what is wrong and where (``path:line: ...`` where there is a line), and
the command line (``bga_mner.cli``) prints it as one line ``bga-mner <command>: error: <message>``
with exit status 2 and no traceback (``BGA_MNER_DEBUG=1`` shows the traceback too). The
operating system's errors about files (not found, a folder, no permission) are treated the same
way there. Every error class of the package that reports bad input derives from it
(``config.ConfigError``, ``data.conll.CoNLLFormatError``, ``data.detect.ObjectsFormatError``,
``inference.CheckpointError``, ``commands.score.TweetMismatchError``, ...).
"""


class UserError(Exception):
    """Bad input named in the message (file and line where there is one); not a bug."""
