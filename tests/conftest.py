from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from support import Account, Server, Signer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server with the weight limit off (tests create their own accounts)."""
    srv = Server(tmp_path_factory.mktemp("shared-server"), ["--ip-weight-limit", "0"])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, with the default weight limit."""
    srv = Server(tmp_path / "server")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def account(server: Server) -> Account:
    return server.create_account("test")


@pytest.fixture
def signer(server: Server, account: Account) -> Signer:
    return Signer(server.base_url, account)
