"""The one base class of errors a user fixes by changing their input (option file, flag, file, path).

The ``basicsr`` command (:func:`ecma_basicsr.cli.main`) prints any :class:`UserError` as one line,
``basicsr <command>: error: <message>``, and exits with status 1; every other exception is a bug and
keeps its traceback. Subclasses: :class:`~ecma_basicsr.engine.options_check.OptionError`,
:class:`~ecma_basicsr.engine.checkpoint.CheckpointError`, :class:`~ecma_basicsr.bench.BenchError`,
:class:`~ecma_basicsr.restore.RestoreError`. The message names the problem and the fix.

This module imports nothing, so the command line can catch these errors before torch is loaded.
"""


class UserError(Exception):
    """Bad input the user can fix; the message says what is wrong and how to fix it."""
