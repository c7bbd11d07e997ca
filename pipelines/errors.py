"""Errors the ``ssm-signal`` command reports as one line (``pipelines.cli``).

A :class:`UsageError` is a command line that asks for something impossible (exit code 2, as
argparse's own errors); any other exception is a failure (exit code 1). Both print one line
naming the problem; ``--debug`` adds the traceback.
"""

from __future__ import annotations


class UsageError(ValueError):
    """The command line or a config names something that cannot be used: what, and which option."""


class Interrupted(Exception):
    """A job stopped early on a signal (SIGTERM), its finished part kept: the message says where and
    how to resume. The command exits with 128 + the signal number."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
