"""Offline is a normal condition: reading a hub dataset with no route to the hub fails at once, naming the local
alternative, instead of retrying with back-off."""

from __future__ import annotations

import socket
import time

import pytest

from k15.evalsuite import data
from k15.evalsuite.data import DataError
from k15.evalsuite.tasks import get_task


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub endpoint is a loopback port nobody listens on (as on a machine without network)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for key in ("HTTPS_PROXY", "https_proxy", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", data.DATA_DIR_ENV):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    data.hub_unreachable.cache_clear()
    yield
    data.hub_unreachable.cache_clear()


@pytest.mark.usefixtures("no_hub")
@pytest.mark.parametrize("task", ["math500", "aime24", "mathvista"])
def test_a_hub_task_without_network_fails_at_once_naming_the_local_copy(task: str) -> None:
    started = time.monotonic()
    with pytest.raises(DataError) as error:
        get_task(task).items()
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert "unreachable" in message and "--data-dir" in message and data.DATA_DIR_ENV in message


@pytest.mark.usefixtures("no_hub")
def test_packaged_and_local_data_need_no_network(tmp_path) -> None:
    assert len(get_task("humaneval").items()) == 164  # from the installed package
    (tmp_path / "math500").mkdir()
    (tmp_path / "math500" / "test.jsonl").write_text('{"problem": "1+1?", "answer": "2", "unique_id": "a"}\n')
    assert [item.id for item in get_task("math500").items(tmp_path)] == ["a"]
