"""The daemon's state records: rewritten in place, whole, whatever the length."""
import json
import os

from prisond.host.store import StateStore, rewrite_in_place


def test_a_record_is_rewritten_in_place_and_whole(tmp_path):
    store = StateStore(str(tmp_path / "state"))
    store.ensure_dir()
    store.put_prison("web", {"jid": 1, "state": "starting", "reason": "x" * 200})
    path = tmp_path / "state" / "prisons" / "web.json"
    inode = os.stat(path).st_ino
    store.put_prison("web", {"jid": 1, "state": "running"})  # shorter: blanks after it
    assert os.stat(path).st_ino == inode  # no new file per change of state
    assert os.stat(path).st_mode & 0o777 == 0o600  # a prison's record is not every host user's
    assert store.prisons() == {"web": {"jid": 1, "state": "running"}}
    store.put_prison("web", {"jid": 1, "state": "running", "reason": "y" * 300})  # longer
    assert json.loads(path.read_text())["reason"] == "y" * 300
    assert not [n for n in os.listdir(path.parent) if n.startswith(".")]  # no temporary files left


def test_a_record_above_a_page_is_written_the_safe_way(tmp_path):
    path = tmp_path / "big.json"
    rewrite_in_place(str(path), json.dumps({"a": "z" * 5000}))
    rewrite_in_place(str(path), json.dumps({"a": 1}))
    assert json.loads(path.read_text()) == {"a": 1}
