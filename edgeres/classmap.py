"""How class folders map to a model's outputs: by label name, or by an explicit class map.

``ImageSource.label_index`` (``edgeres.data``) applies these rules; ``eval --class-map`` reads
a map with ``read_class_map``. Folder names match labels case-insensitively; a folder no label
matches is refused, naming the folders and the labels. A class map is ``"ids"`` (folder ``3/``
is output 3) or a JSON object of folder name → output index or label. Layer 0: stdlib only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeres.errors import DataError, first_line

# How class folders map to output indices: "ids" (folder "3" is output 3), or folder name →
# output index or label; None maps by label name (see ImageSource.label_index).
ClassMap = str | dict[str, int | str]


def placeholders(labels: tuple[str, ...]) -> bool:
    """Whether ``labels`` are the ``class_<i>`` names a record without class names gets."""
    return all(label == f"class_{i}" for i, label in enumerate(labels))


def _names(values: Any, limit: int = 6) -> str:
    values = list(values)
    more = f", ... ({len(values)} in all)" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


_MAP_HINT = ("rename the folders to the labels (case does not matter), or give `edgeres eval` "
             "--class-map FILE (JSON: {\"folder\": label or index}) or --class-map ids "
             "(folders named 0, 1, ...)")


def by_name(name: str, classes: tuple[str, ...], labels: tuple[str, ...]) -> dict[str, int]:
    folded: dict[str, int] = {}
    for i, label in enumerate(labels):
        folded.setdefault(label.casefold(), i)
    unmatched = [c for c in classes if c.casefold() not in folded]
    if unmatched:
        msg = (f"{name}: class folders {_names(unmatched)} match none of the model's labels "
               f"({_names(labels)}); {_MAP_HINT}")
        raise DataError(msg)
    return {c: folded[c.casefold()] for c in classes}


def mapped(name: str, classes: tuple[str, ...], class_map: ClassMap,
            labels: tuple[str, ...] | None, count: int) -> dict[str, int]:
    if class_map == "ids":
        named = [c for c in classes if not c.isdecimal()]
        if named:
            msg = (f"{name}: --class-map ids needs folders named by output index (0, 1, ...); "
                   f"{_names(named)} are not")
            raise DataError(msg)
        return {c: int(c) for c in classes}
    if isinstance(class_map, str):
        msg = f"class map {class_map!r} is not 'ids' or a folder → class mapping"
        raise DataError(msg)
    missing = [c for c in classes if c not in class_map]
    if missing:
        msg = f"{name}: the class map has no entry for folders {_names(missing)}; add them"
        raise DataError(msg)
    folded = {label.casefold(): i for i, label in reversed(list(enumerate(labels or ())))}
    index: dict[str, int] = {}
    for c in classes:
        target = class_map[c]
        if isinstance(target, str) and target.casefold() not in folded:
            msg = (f"{name}: the class map sends {c!r} to {target!r}, which is not one of the "
                   f"model's labels ({_names(labels or ())})")
            raise DataError(msg)
        index[c] = folded[target.casefold()] if isinstance(target, str) else target
    return index


def read_class_map(value: str | Path) -> ClassMap:
    """``ids``, or a JSON file holding an object ``{"folder": output index or label}``.

    Raises:
        DataError: if the file cannot be read or does not hold such an object.
    """
    if str(value) == "ids":
        return "ids"
    path = Path(value)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        msg = (f"class map {value}: not a readable JSON file ({first_line(e)}); give 'ids' or "
               'a JSON object such as {"man": "male", "woman": 1}')
        raise DataError(msg) from None
    ok = isinstance(doc, dict) and all(
        isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
        for v in doc.values())
    if not ok or not doc:
        msg = (f"class map {value}: expected a JSON object of folder name → output index or "
               'label, such as {"man": "male", "woman": 1}')
        raise DataError(msg)
    return dict(doc)
