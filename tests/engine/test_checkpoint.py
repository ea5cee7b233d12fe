import os
import stat

import pytest
import torch

from cifarlab.engine import checkpoint
from cifarlab.engine.rundir import RunDir
from cifarlab.errors import CheckpointError, CifarlabError


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save({"epoch": 1, "w": torch.ones(3)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        checkpoint.save({"epoch": 2, "w": Boom()}, path)
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


class RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/cifarlab-ckpt-pwned",))


def test_load_refuses_a_checkpoint_that_would_run_code(tmp_path):
    import os

    path = tmp_path / "x.pt"
    torch.save({"model": {"w": torch.ones(1)}, "extra": RunsCode()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        checkpoint.load(path)
    assert not os.path.exists("/tmp/cifarlab-ckpt-pwned")


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "t.pt"
    checkpoint.save({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(path)


def test_second_process_on_the_same_run_dir_is_refused(tmp_path):
    with RunDir(tmp_path / "run"):
        with pytest.raises(CifarlabError, match=r"is in use by pid \d+"):
            with RunDir(tmp_path / "run"):
                pass
    with RunDir(tmp_path / "run"):  # released on exit
        pass


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask_like_a_plain_open(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        assert checkpoint.current_umask() == mask
        checkpoint.save({"w": torch.ones(2)}, tmp_path / "ckpt.pt")
        checkpoint.write_json(tmp_path / "summary.json", {"a": 1})
        (tmp_path / "plain.txt").write_text("x")  # what the user's other tools would create
    finally:
        os.umask(old)
    for name in ("ckpt.pt", "summary.json", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


@pytest.mark.parametrize("content", [os.urandom(4096), b"hello, not a checkpoint\n", b""])
def test_random_bytes_are_called_corrupt_not_hostile(tmp_path, content):
    """A file of random bytes (or text, or nothing) is not a checkpoint at all: it is called corrupt, with the path,
    and not refused as if it held code."""
    path = tmp_path / "init.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(path)
    assert str(err.value) == (f"not a readable checkpoint (corrupt or truncated): {path}; save it again, or point "
                              "to another file")


def test_a_checkpoint_cut_in_half_is_called_corrupt(tmp_path):
    path = tmp_path / "d.pt"
    checkpoint.save({"w": torch.arange(5000.0)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"^not a readable checkpoint \(corrupt or truncated\): "):
        checkpoint.load(path)


def test_a_checkpoint_holding_objects_is_still_refused_as_such(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"model": {"w": torch.ones(1)}, "extra": RunsCode()}, path)
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: refused to load: it holds objects other than tensors")
    assert "corrupt" not in message
