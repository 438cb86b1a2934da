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


def test_files_get_the_permissions_of_a_plain_open(tmp_path):
    import os
    import stat
    previous = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "metrics.json")
        with open(tmp_path / "plain.json", "w") as out:
            out.write("{}")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o644
