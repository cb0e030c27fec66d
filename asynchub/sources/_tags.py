"""The zoo's convention for tags: the folders of a model's path.

Used where a manifest is built from files rather than read: a local folder
(``asynchub manifest build``) and a Hugging Face repo's listing.
"""

from __future__ import annotations

__all__ = ("folder_tags",)

_GENERIC_FOLDERS = frozenset({"model", "models", "validated", "archive"})
_RENAMED_FOLDERS = {"preproc": "preprocessing"}


def folder_tags(relative: str) -> list[str]:
    """Tags from the folders of a POSIX path, like the official zoo's generator.

    ``validated/vision/object_detection/yolo/model/yolo-9.onnx`` gives
    ``["vision", "object detection", "yolo"]``: generic folders are dropped,
    underscores become spaces, ``preproc`` becomes ``preprocessing``.
    """
    tags: list[str] = []
    for folder in relative.split("/")[:-1]:
        if folder.lower() in _GENERIC_FOLDERS:
            continue
        tag = _RENAMED_FOLDERS.get(folder, folder.replace("_", " "))
        if tag not in tags:
            tags.append(tag)
    return tags
