"""Why a path cannot be read as a file, in words a user understands.

libsndfile reports a missing or unreadable file as "System error.", and opening a FIFO named
``x.wav`` for reading blocks until a writer appears. Readers therefore ``stat`` a path first
(one system call, no open) and refuse anything that is not a regular file, with the reason:
no such file, permission denied, symlink loop, not a regular file (FIFO, directory, ...).
"""

from __future__ import annotations

import errno
import os
import stat

from ssm_signal.data.skips import DataError

_ERRNO_WORDS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "symlink loop",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.EISDIR: "is a directory",
}

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def os_error_words(e: OSError) -> str:
    """An OSError as a few words: "no such file", "permission denied", "symlink loop", ..."""
    return _ERRNO_WORDS.get(e.errno, (e.strerror or type(e).__name__).lower())


def not_regular_words(mode: int) -> str | None:
    """None for a regular file's ``st_mode``, else "not a regular file (a FIFO (named pipe))" and the like."""
    if stat.S_ISREG(mode):
        return None
    kind = next((words for test, words in _KINDS if test(mode)), "not a plain file")
    return f"not a regular file ({kind})"


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a file (one ``stat``, symlinks followed, no open), or None."""
    try:
        st = os.stat(path)
    except OSError as e:
        return os_error_words(e)
    except ValueError:  # a NUL byte in the path
        return "invalid path"
    return not_regular_words(st.st_mode)


def regular_file(path: str | os.PathLike) -> os.stat_result:
    """``os.stat`` of a path that is a regular file (symlinks followed), without opening it.

    Raises:
        DataError: "<path>: no such file" / "permission denied" / "symlink loop" / "not a regular file (...)".
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise DataError(f"{os.fspath(path)}: {os_error_words(e)}") from e
    problem = not_regular_words(st.st_mode)
    if problem is not None:
        raise DataError(f"{os.fspath(path)}: {problem}")
    return st  # an unreadable one fails at open, where os_error_words says "permission denied"
