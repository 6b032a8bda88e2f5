"""On-disk stage caches: one folder per input item, one sub-folder per stage, written atomically.

Layout (see README, "Stage cache")::

    WORKDIR/<item>/<stage>/meta.json   # written last; a stage folder without it is never trusted
    WORKDIR/<item>/<stage>/...         # the stage's files

A stage is *current* when its ``meta.json`` holds the key computed from (stage name, stage version, the
content hash of its inputs, its parameters). Stages are written into a temporary sibling folder and swapped
into place with renames, so a killed run leaves either the old complete result or the new one.
"""

from thead.cache.store import (
    META_NAME,
    StageInfo,
    file_digest,
    find_stage_dirs,
    item_id_for,
    read_meta,
    stage_is_current,
    stage_key,
    write_stage,
)

__all__ = [
    "META_NAME",
    "StageInfo",
    "file_digest",
    "find_stage_dirs",
    "item_id_for",
    "read_meta",
    "stage_is_current",
    "stage_key",
    "write_stage",
]
