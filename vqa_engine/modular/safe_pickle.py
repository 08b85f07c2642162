"""Reading the seed's ``vocab.pkl`` without running code from it.

A pickle can name any importable callable and call it while loading (``os.system`` included).
This unpickler resolves only plain container types; any other name is refused before it is looked
up, so a hostile file fails without side effects.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from vqa_engine.errors import UnsafePickleError

MAX_PICKLE_BYTES = 50 * 1024 * 1024

_ALLOWED = {
    ("builtins", name)
    for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int", "float", "bool")
} | {("collections", "OrderedDict")}


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to load a pickle that references {module}.{name}: only plain containers "
            "(dict, list, tuple, set, str, numbers) are accepted. Convert the file to vocab.json."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing to load a pickle with persistent references")


def load_plain_pickle(data: bytes) -> Any:
    """Unpickle ``data`` if it holds only plain containers; raises ``UnsafePickleError`` otherwise."""
    if len(data) > MAX_PICKLE_BYTES:
        raise UnsafePickleError(f"pickle file is larger than {MAX_PICKLE_BYTES // 2**20} MB")
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # malformed pickles raise a zoo of types
        raise UnsafePickleError(f"the pickle file is malformed: {exc}") from exc
