"""Tests for how the CLI renders long records: `info` shows a few labels and the count."""

from __future__ import annotations

import json

from edgeres.cli import _model


class _Meta:
    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def to_dict(self) -> dict:
        return {"schema_version": 1, "labels": self.labels, "input": {"shape": [1, 3, 8, 8]}}


def test_info_cuts_a_long_label_list_to_five_and_the_count() -> None:
    """1000 labels print as five and '... 995 more (1000 labels)'; the rest is untouched."""
    text = _model._record_text(_Meta([f"class_{i}" for i in range(1000)]))
    d = json.loads(text)
    assert d["labels"] == ["class_0", "class_1", "class_2", "class_3", "class_4",
                           "... 995 more (1000 labels)"]
    assert d["input"] == {"shape": [1, 3, 8, 8]} and len(text.splitlines()) < 20


def test_info_keeps_a_short_label_list() -> None:
    """Ten labels (CIFAR-10) are all shown."""
    labels = [f"c{i}" for i in range(10)]
    assert json.loads(_model._record_text(_Meta(labels)))["labels"] == labels
