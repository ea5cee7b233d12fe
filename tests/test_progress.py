"""The package's progress bar: on, off, auto (a terminal only), on stderr with its rate."""

import io

import pytest

from cifarlab import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_modes(monkeypatch):
    monkeypatch.setattr("sys.stderr", _Tty())
    assert progress.enabled("on") and not progress.enabled("off")
    assert progress.enabled("auto")  # a terminal
    monkeypatch.setattr("sys.stderr", io.StringIO())  # piped or logged: quiet
    assert not progress.enabled("auto")
    with pytest.raises(ValueError, match="progress='yes'; choose from: auto, on, off"):
        progress.enabled("yes")


@pytest.mark.parametrize("mode", ["on", "off"])
def test_bar_writes_one_line_with_its_rate_to_stderr_only_when_on(capsys, mode):
    with progress.bar(10, "decoding", mode, unit="img") as bar:
        bar.update(10)
    out, err = capsys.readouterr()
    assert out == ""
    assert ("decoding" in err and "img/s" in err and "\n" not in err.strip("\n")) if mode == "on" else err == ""
