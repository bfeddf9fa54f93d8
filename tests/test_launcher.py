"""Which paths no host user can reach, and whose a confined root is (host/reach.py)."""
import os
import stat

from prisond.host.reach import foreign_owner, hidden_from_users


def fake(modes: dict[str, tuple[int, int]]):
    """stat for a tree of (uid, mode) per directory."""
    def stat_of(path):
        uid, mode = modes[path]
        return os.stat_result((stat.S_IFDIR | mode, 0, 0, 0, uid, 0, 0, 0, 0, 0))
    return stat_of


def test_a_root_only_directory_on_the_way_hides_what_is_below():
    tree = {"/": (0, 0o755), "/srv": (0, 0o755), "/srv/prisons": (0, 0o700), "/srv/prisons/web1": (0, 0o755)}
    assert hidden_from_users("/srv/prisons/web1", fake(tree))


def test_open_directories_all_the_way_do_not():
    tree = {"/": (0, 0o755), "/srv": (0, 0o755), "/srv/prisons": (0, 0o755), "/srv/prisons/web1": (0, 0o700)}
    assert not hidden_from_users("/srv/prisons/web1", fake(tree))  # the path itself does not count


def test_a_directory_others_or_its_group_may_enter_or_a_user_owns_does_not_hide():
    for uid, mode in ((0, 0o710), (0, 0o701), (1000, 0o700)):
        tree = {"/": (0, 0o755), "/srv": (uid, mode), "/srv/web1": (0, 0o755)}
        assert not hidden_from_users("/srv/web1", fake(tree)), (uid, oct(mode))


def test_a_root_whose_etc_or_passwd_a_user_owns_is_named():
    def lstat_of(owners):
        def lstat(path):
            if path not in owners:
                raise FileNotFoundError(path)
            return os.stat_result((stat.S_IFDIR | 0o755, 0, 0, 0, owners[path], 0, 0, 0, 0, 0))
        return lstat
    assert foreign_owner("/r", lstat_of({"/r": 0, "/r/etc": 0, "/r/etc/passwd": 0})) is None
    assert foreign_owner("/r", lstat_of({"/r": 0, "/r/etc": 0})) is None  # no passwd yet
    assert foreign_owner("/r", lstat_of({"/r": 0, "/r/etc": 0, "/r/etc/passwd": 65534})) == "/r/etc/passwd"
    assert foreign_owner("/r", lstat_of({"/r": 1000, "/r/etc": 0})) == "/r"
