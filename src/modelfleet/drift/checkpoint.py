"""The exporter's checkpoint: spool positions, windows, counters and label joins in ONE file, atomically.

Everything the exporter has counted is saved together in ``<state_dir>/checkpoint.npz`` — an
uncompressed NumPy archive holding a JSON document (``__meta__``: per version its spool position,
counters and configuration; the label joiner; the labels file position) and the window arrays
(``v/<model>/<version>/<part>/<name>``). It is written to a temporary file in the same directory,
fsynced, renamed over the old one and the directory fsynced: a crash (``kill -9``, power loss)
leaves either the old or the new checkpoint, never a mixture.

Because the positions and the windows are one snapshot, a restart resumes reading exactly after the
last line the restored windows contain: spool records are counted once. What a crash loses is only
what happened after the last checkpoint — the records read since are read again from the spool
(while the spool still holds them), labels from the labels file likewise; labels that came over
HTTP since the last checkpoint are lost (at most ``--checkpoint-interval`` seconds of them).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from modelfleet.errors import ModelfleetError
from modelfleet.fsutil import replace_atomically

CHECKPOINT_FILE = "checkpoint.npz"
FORMAT = 1
_META = "__meta__"


class CheckpointError(ModelfleetError):
    """A checkpoint file that cannot be read."""


def save_checkpoint(path: Path, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> int:
    """Atomically replace ``path`` with ``meta`` and ``arrays``; returns the size written."""
    document = orjson.dumps({"format": FORMAT, **meta}, option=orjson.OPT_SERIALIZE_NUMPY)
    payload = {_META: np.frombuffer(document, dtype=np.uint8), **arrays}
    return replace_atomically(path, lambda handle: np.savez(handle, **payload))  # type: ignore[arg-type]


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]] | None:
    """The checkpoint's JSON document and arrays; ``None`` when there is none."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = orjson.loads(arrays.pop(_META).tobytes())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, orjson.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format') if isinstance(meta, dict) else '?'}, "
                              f"expected {FORMAT}")
    return meta, arrays


def version_arrays(arrays: dict[str, npt.NDArray[Any]], model: str, version: str) -> dict[str, npt.NDArray[Any]]:
    """The arrays of one version, with the ``v/<model>/<version>/`` prefix removed."""
    prefix = f"v/{model}/{version}/"
    return {name.removeprefix(prefix): value for name, value in arrays.items() if name.startswith(prefix)}
