"""Make ``TRITON_INTERPRET=1`` (kernels run on the CPU through numpy) work with numpy >= 2.4.

Triton 3.6's interpreter turns a scalar kernel argument into a one-element numpy array
and converts it back with ``int(array)``, which numpy 2.4 turned into a TypeError
("only 0-dimensional arrays can be converted to Python scalars"): every loop whose
bound is a run-time argument fails. Upstream: triton-lang/triton issue #9171, fixed by
pull request #9172 after the 3.6 release. Until the project's Triton carries that fix,
this module makes the same conversion explicit. It touches only the interpreter, and
only when ``TRITON_INTERPRET`` is set; compiled GPU kernels are unaffected.
"""

from __future__ import annotations

import os


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def patch_interpreter_index() -> bool:
    """Install the fix once; returns whether it is installed (False when not needed)."""
    import numpy as np

    try:
        int(np.zeros(1, dtype=np.int64))
        return False  # numpy < 2.4 still converts one-element arrays
    except TypeError:
        pass
    from triton.runtime import interpreter

    if getattr(interpreter, "_ssm_signal_index_fix", False):
        return True
    original = interpreter._patch_lang_tensor

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patch_lang_tensor
    interpreter._ssm_signal_index_fix = True
    return True
