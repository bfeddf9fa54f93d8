from prisond.model.config import parse
from prisond.model.diff import diff


def test_diff_names_added_changed_removed_unchanged():
    old = parse("prisons:\n  a: {ip4: [127.0.2.1]}\n  b: {ip4: [127.0.3.1]}\n  c: {}\n", "x")
    new = parse("prisons:\n  a: {ip4: [127.0.2.1]}\n  b: {ip4: [127.0.3.2]}\n  d: {}\n", "x")
    d = diff(old, new)
    assert (d.added, d.changed, d.removed, d.unchanged) == (("d",), ("b",), ("c",), ("a",))


def test_a_change_in_defaults_changes_every_prison_it_reaches():
    old = parse("prisons:\n  a: {}\n  b: {stop: {timeout: 1}}\n", "x")
    new = parse("defaults: {stop: {timeout: 2}}\nprisons:\n  a: {}\n  b: {stop: {timeout: 1}}\n", "x")
    d = diff(old, new)
    assert d.changed == ("a",) and d.unchanged == ("b",)


def test_a_change_in_the_daemon_section_is_named():
    old = parse("daemon: {public_read: true}\nprisons: {a: {ip4: [127.0.2.1]}}\n", "x")
    new = parse("daemon: {public_read: false, control_group: users}\nprisons: {a: {ip4: [127.0.2.1]}}\n", "x")
    d = diff(old, new)
    assert d.daemon == ("control_group", "public_read") and d.unchanged == ("a",)
    assert diff(old, old).daemon == ()


def test_a_reordered_file_with_one_prison_swapped_for_another():
    old = parse("prisons:\n  a: {}\n  b: {}\n  c: {}\n", "x")
    new = parse("prisons:\n  c: {}\n  a: {}\n  d: {}\n", "x")
    d = diff(old, new)
    assert (d.added, d.changed, d.removed, d.unchanged) == (("d",), (), ("b",), ("c", "a"))
    assert diff(new, new).unchanged == ("c", "a", "d") and new.prison("d") is new.prisons[2]
