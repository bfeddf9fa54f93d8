"""The helper that starts prisons' inits for the daemon (host/spawner.py): a real helper
process, real programs, the stdin descriptor handed over."""
import os

from prisond.host.spawner import Spawner


def test_the_spawner_runs_a_program_with_the_given_stdin():
    sp = Spawner()
    sp.start()
    r, w = os.pipe()
    try:
        os.write(w, b"hello\n")
        os.close(w)
        rc, out, err = sp.run(["/bin/sh", "-c", "read x; echo got $x; echo oops >&2; exit 3"], r, 10)
        assert (rc, out, err) == (3, b"got hello\n", b"oops\n")
        rc, out, _ = sp.run(["/bin/sh", "-c", "ls /proc/self/fd"], r, 10)
        assert out.split() == [b"0", b"1", b"2", b"3"]  # its own three and ls's directory: nothing of ours
    finally:
        os.close(r)
        sp.stop()
    assert sp.proc.returncode == 0  # it ended when its socket closed
    assert sp.run(["/bin/true"], 0, 1) is None  # gone: the daemon starts the init itself


def test_a_program_that_cannot_be_run_is_reported():
    sp = Spawner()
    sp.start()
    try:
        rc, _, err = sp.run(["/nonexistent/prisonjail"], 0, 5)
        assert rc == -1 and b"No such file" in err
    finally:
        sp.stop()


def test_the_spawner_imports_nothing_from_where_the_daemon_was_started(tmp_path, monkeypatch):
    """A prisond/ package in the daemon's working directory (a /tmp anyone writes) is not what
    the helper, root, imports."""
    fake = tmp_path / "prisond"
    (fake / "host").mkdir(parents=True)
    marker = tmp_path / "imported"
    (fake / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (fake / "host" / "__init__.py").write_text("")
    (fake / "host" / "spawner.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    sp = Spawner()
    sp.start()
    try:
        rc, out, _ = sp.run(["/bin/echo", "ok"], 0, 10)
        assert (rc, out) == (0, b"ok\n")
    finally:
        sp.stop()
    assert not marker.exists(), "the helper imported the working directory's prisond"
