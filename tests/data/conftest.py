import urllib.error
import urllib.request

import pytest


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test under tests/data may reach the network: every download attempt fails as it does on an offline
    machine (the named datasets' tests rely on it for their offline errors)."""
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
