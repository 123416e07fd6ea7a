"""input_pipelines.fs: the same behaviour on a local directory, gs:// and s3:// (emulators)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from input_pipelines import fs


@pytest.fixture(params=["local", "gs", "s3"])
def root(request, tmp_path) -> str:
    """An empty directory: local, or a prefix in a new bucket on each emulator."""
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("gcs_bucket" if request.param == "gs" else "s3_bucket") + "/root"


def _tree(root: str) -> None:
    for name in ("top.csv", "d/a.csv", "d/b.txt", "d/sub/c.csv"):
        fs.makedirs(fs.dirname(fs.join(root, name)))
        fs.write_atomically(fs.join(root, name), name)


def test_write_read_and_stat(root):
    path = fs.join(root, "x", "f.bin")
    assert not fs.exists(path) and not fs.isfile(path)
    fs.makedirs(fs.dirname(path))
    fs.write_atomically(path, b"\x00\x01payload")
    assert fs.read_bytes(path) == b"\x00\x01payload" and fs.getsize(path) == 9
    assert fs.exists(path) and fs.isfile(path) and not fs.isdir(path)
    assert fs.isdir(fs.join(root, "x")) and not fs.isfile(fs.join(root, "x"))
    fs.write_atomically(path, "replaced, ünicode")  # str is utf-8
    assert fs.read_text(path) == "replaced, ünicode"
    for fn in (fs.read_bytes, fs.getsize, fs.open, fs.remove):
        with pytest.raises(FileNotFoundError) as e:
            fn(fs.join(root, "missing.csv"))
        assert e.value.filename == fs.join(root, "missing.csv")  # the path the user gave, not an HTTP one


def test_glob_recursive_sorted_files_only_and_no_match(root):
    _tree(root)
    assert fs.glob(fs.join(root, "**", "*.csv")) == [fs.join(root, n) for n in ("d/a.csv", "d/sub/c.csv", "top.csv")]
    assert fs.glob(fs.join(root, "d", "*")) == [fs.join(root, "d/a.csv"), fs.join(root, "d/b.txt")]  # no dirs
    assert fs.glob(fs.join(root, "d", "b.txt")) == [fs.join(root, "d/b.txt")]
    assert fs.glob(fs.join(root, "*.parquet")) == [] and fs.glob(fs.join(root, "nowhere", "*")) == []
    for found in fs.glob(fs.join(root, "**")):  # results open as they are
        assert fs.read_text(found) == found[len(root) + 1:]


def test_glob_of_a_missing_bucket_matches_nothing(bucket):
    scheme = fs.protocol(bucket)
    assert fs.glob(f"{scheme}://no-such-bucket-{os.getpid()}/*.csv") == []


def test_listdir_names_and_missing_directory(root):
    _tree(root)
    assert sorted(fs.listdir(root)) == ["d", "top.csv"]
    assert sorted(fs.listdir(fs.join(root, "d"))) == ["a.csv", "b.txt", "sub"]
    with pytest.raises(FileNotFoundError) as e:
        fs.listdir(fs.join(root, "missing"))
    assert e.value.filename == fs.join(root, "missing")


def test_text_and_binary_modes(root):
    path = fs.join(root, "t.csv")
    with fs.open(path, "w", newline="") as f:
        f.write("a,b\r\nä,2\n")
    assert fs.read_bytes(path) == "a,b\r\nä,2\n".encode()
    with fs.open(path) as f:  # "rb"
        assert f.readline(2) == b"a," and f.read() == "b\r\nä,2\n".encode()
        f.seek(1)
        assert f.read(3) == b",b\r"
    with fs.open(path, "r") as f:
        assert f.read() == "a,b\nä,2\n"  # universal newlines
    with fs.open(path, "rt", encoding="latin-1", newline="") as f:
        assert f.read() == "a,b\r\nä,2\n".encode().decode("latin-1")


def test_exclusive_mode_never_overwrites(root):
    path = fs.join(root, "marker")
    with fs.open(path, "x") as f:
        f.write("first")
    with pytest.raises(FileExistsError):
        with fs.open(path, "xb") as f:
            f.write(b"second")
    assert fs.read_text(path) == "first"


def test_append_is_refused_on_buckets_only(root):
    path = fs.join(root, "log.txt")
    fs.write_atomically(path, "a\n")
    if not fs.is_url(root):
        with fs.open(path, "a") as f:
            f.write("b\n")
        assert fs.read_text(path) == "a\nb\n"
        return
    with pytest.raises(ValueError, match="cannot be appended"):
        fs.open(path, "a")
    assert fs.read_text(path) == "a\n"


def test_create_exclusively_has_one_winner_among_racing_writers(root):
    writers, rounds = 6, 3
    for r in range(rounds):
        path = fs.join(root, f"claim-{r}")
        barrier, wins = threading.Barrier(writers), {}

        def claim(i: int, path: str = path, barrier: threading.Barrier = barrier, wins: dict = wins) -> None:
            barrier.wait()
            wins[i] = fs.create_exclusively(path, f"writer {i}")

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, won in wins.items() if won]
        assert len(wins) == writers and len(winners) == 1, wins
        assert fs.read_text(path) == f"writer {winners[0]}"
        assert fs.create_exclusively(path, "late") is False


def test_move_file_and_directory_then_remove(root):
    _tree(root)
    fs.move(fs.join(root, "top.csv"), fs.join(root, "moved.csv"))
    assert not fs.exists(fs.join(root, "top.csv")) and fs.read_text(fs.join(root, "moved.csv")) == "top.csv"
    fs.makedirs(fs.join(root, "d2"))
    fs.write_atomically(fs.join(root, "d2", "kept"), "a sibling whose name starts like d")
    fs.move(fs.join(root, "d"), fs.join(root, "e"))
    assert not fs.exists(fs.join(root, "d")) and fs.read_text(fs.join(root, "d2", "kept")).startswith("a sibling")
    fs.rmtree(fs.join(root, "d2"))
    assert fs.glob(fs.join(root, "e", "**")) == [fs.join(root, "e", n) for n in ("a.csv", "b.txt", "sub/c.csv")]
    assert fs.read_text(fs.join(root, "e", "sub", "c.csv")) == "d/sub/c.csv"
    fs.remove(fs.join(root, "moved.csv"))
    assert not fs.exists(fs.join(root, "moved.csv"))
    fs.rmtree(fs.join(root, "e"))
    assert not fs.exists(fs.join(root, "e")) and fs.glob(fs.join(root, "**")) == []
    fs.rmtree(fs.join(root, "e"))  # missing_ok
    with pytest.raises(FileNotFoundError):
        fs.rmtree(fs.join(root, "e"), missing_ok=False)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reads_with_its_own_client(bucket):
    fs.write_atomically(bucket + "/f.txt", "from the parent")
    # In a fresh process (this one has JAX's threads, which fork must not copy).
    code = textwrap.dedent(f"""
        import os
        from input_pipelines import fs
        assert fs.read_text({bucket + "/f.txt"!r}) == "from the parent"  # the parent's client is up
        pid = os.fork()
        if pid == 0:
            os._exit(0 if fs.read_text({bucket + "/f.txt"!r}) == "from the parent" else 3)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "0", out.stderr


def test_move_between_local_and_bucket_is_refused(tmp_path):
    with pytest.raises(ValueError, match="both must be local or both URLs"):
        fs.move(str(tmp_path / "a"), "gs://b/a")


def test_urls_are_joined_with_slashes_and_never_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert fs.absolute("gs://b/m/") == "gs://b/m" and fs.absolute("s3://b/m") == "s3://b/m"
    assert fs.absolute("gs://b") == "gs://b"
    assert fs.absolute("m") == str(tmp_path / "m") and fs.absolute("~") == os.path.expanduser("~")
    assert fs.join("gs://b/m", "a", "b.csv") == "gs://b/m/a/b.csv"
    assert fs.dirname("gs://b/m/a.csv") == "gs://b/m" and fs.dirname("gs://b/m/") == "gs://b"
    assert fs.basename("s3://b/m/") == "m" and fs.basename("s3://b/m/a.csv") == "a.csv"
    assert fs.protocol("GS://b") == "gs" and fs.protocol("/x") == "file" and fs.is_url(fs.absolute("gs://b/m/"))
    fs.makedirs("gs://never-contacted/a/b")  # a no-op on buckets: no client, no network


def test_an_unknown_protocol_is_a_clear_error():
    with pytest.raises(ValueError, match="no file system is known for nosuch://"):
        fs.exists("nosuch://b/x")


def test_a_missing_extra_names_it():
    # A fresh process in which gcsfs and s3fs cannot be imported (as without the extras).
    code = textwrap.dedent("""
        import sys
        sys.modules["gcsfs"] = sys.modules["s3fs"] = None
        from input_pipelines import fs
        for url, extra in (("gs://b/x", "[gcs]"), ("s3://b/x", "[s3]")):
            try:
                fs.exists(url)
            except ImportError as e:
                assert extra in str(e) and url.split(":")[0] + "://" in str(e), e
            else:
                raise SystemExit(f"no ImportError for {url}")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
