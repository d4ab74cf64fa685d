"""Fixtures shared by the dataset tests (imported by each module, so this directory needs no package
or conftest named like the hesslens.datasets or HuggingFace `datasets` packages).

``no_network`` is autouse: every dataset test runs with the network cut off, so a socket connection
attempt fails the test.
"""

import socket

import pytest

from hesslens.datasets import registry


class NetworkAccessed(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise NetworkAccessed(f"a dataset test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def isolated_registry(monkeypatch, tmp_path):
    """A private OpenML cache directory; datasets registered during the test are forgotten afterwards."""
    monkeypatch.setenv("HESSLENS_CACHE_DIR", str(tmp_path / "cache"))
    saved = dict(registry._EXTRA)
    yield tmp_path / "cache" / "openml"
    registry._EXTRA.clear()
    registry._EXTRA.update(saved)
