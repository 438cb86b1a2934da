"""Atomic writes: a writer that fails leaves neither the target nor a temporary file behind."""
import json

import pytest

from bcrepro.atomic import write_atomically, write_json


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    write_json({"a": 1}, target)

    def half_then_crash(out):
        out.write(b'{"a": 2')
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomically(target, half_then_crash)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]
