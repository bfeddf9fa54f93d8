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


def test_a_record_no_longer_needed_is_emptied_and_its_file_reused(tmp_path):
    """No file is unlinked and made again per start and stop: each costs ext4 a search among
    recently freed inodes."""
    store = StateStore(str(tmp_path / "state"))
    store.ensure_dir()
    store.put_prison("web", {"jid": 1, "state": "running"})
    store.put_alias("127.0.2.1", 32, "lo")
    files = [tmp_path / "state" / "prisons" / "web.json", tmp_path / "state" / "aliases" / "127.0.2.1"]
    inodes = [os.stat(f).st_ino for f in files]
    store.drop_prison("web")
    store.drop_alias("127.0.2.1")
    assert store.prisons() == {} and store.aliases() == []
    assert [os.path.getsize(f) for f in files] == [0, 0]
    store.put_prison("web", {"jid": 2, "state": "running"})
    store.put_alias("127.0.2.1", 32, "lo")
    assert store.prisons() == {"web": {"jid": 2, "state": "running"}}
    assert store.aliases() == [{"ip": "127.0.2.1", "prefix": 32, "iface": "lo"}]
    store.clear()  # a clean stop of the daemon
    assert store.prisons() == {} and store.aliases() == []
    assert [os.stat(f).st_ino for f in files] == inodes
    assert [os.stat(f).st_mode & 0o777 for f in files] == [0o600, 0o600]


def test_prune_unlinks_only_the_empty_records_of_names_not_configured(tmp_path):
    store = StateStore(str(tmp_path / "state"))
    store.ensure_dir()
    for name in ("kept", "gone", "live"):
        store.put_prison(name, {"jid": 1})
    for ip in ("127.0.2.1", "127.0.2.2", "127.0.2.3"):
        store.put_alias(ip, 32, "lo")
    store.drop_prison("kept")
    store.drop_prison("gone")
    store.drop_alias("127.0.2.1")
    store.drop_alias("127.0.2.2")
    store.prune({"kept"}, {"127.0.2.1"})  # "live" and 127.0.2.3 hold records: never unlinked
    assert sorted(os.listdir(tmp_path / "state" / "prisons")) == ["kept.json", "live.json"]
    assert sorted(os.listdir(tmp_path / "state" / "aliases")) == ["127.0.2.1", "127.0.2.3"]
    assert store.prisons() == {"live": {"jid": 1}}


def test_emptying_a_record_never_follows_a_link(tmp_path):
    store = StateStore(str(tmp_path / "state"))
    store.ensure_dir()
    target = tmp_path / "precious"
    target.write_text("keep me")
    os.symlink(target, tmp_path / "state" / "prisons" / "web.json")
    store.drop_prison("web")
    assert target.read_text() == "keep me"
    assert not os.path.lexists(tmp_path / "state" / "prisons" / "web.json")


def test_a_directory_among_the_records_does_not_stop_a_clean_stop(tmp_path):
    store = StateStore(str(tmp_path / "state"))
    store.ensure_dir()
    os.mkdir(tmp_path / "state" / "prisons" / "junk.json")
    store.put_prison("web", {"jid": 1})
    store.clear()
    assert store.prisons() == {}
    assert os.path.isdir(tmp_path / "state" / "prisons" / "junk.json")


def test_links_among_the_records_are_replaced_never_written_through(tmp_path):
    """A hard or symbolic link where a record goes: the record replaces the link; the file it
    names is neither written nor emptied."""
    store = StateStore(str(tmp_path / "state"))
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    store.ensure_dir()
    os.link(victim, tmp_path / "state" / "prisons" / "hard.json")
    store.drop_prison("hard")
    assert victim.read_text() == "keep me"
    os.link(victim, tmp_path / "state" / "prisons" / "hard.json")
    store.put_prison("hard", {"jid": 1})
    assert victim.read_text() == "keep me" and store.prisons() == {"hard": {"jid": 1}}
    os.symlink(victim, tmp_path / "state" / "aliases" / "127.0.2.1")
    store.put_alias("127.0.2.1", 32, "lo")  # a start is not blocked by the link
    assert victim.read_text() == "keep me"
    assert store.aliases() == [{"ip": "127.0.2.1", "prefix": 32, "iface": "lo"}]


def test_a_linked_record_directory_is_not_followed(tmp_path):
    store = StateStore(str(tmp_path / "state"))
    store.ensure_dir()
    os.rmdir(tmp_path / "state" / "aliases")
    os.makedirs(tmp_path / "victimdir")
    (tmp_path / "victimdir" / "data.txt").write_text("keep me")
    os.symlink(tmp_path / "victimdir", tmp_path / "state" / "aliases")
    with open(tmp_path / "state" / "boot_id", "w") as fh:
        fh.write("another boot\n")
    store.ensure_dir()
    store.prune(set(), set())
    assert (tmp_path / "victimdir" / "data.txt").read_text() == "keep me"
    assert os.path.isdir(tmp_path / "state" / "aliases") and not os.path.islink(tmp_path / "state" / "aliases")
