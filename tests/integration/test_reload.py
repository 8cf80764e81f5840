"""`pyl2tp ctl reload`: users added to the config file can log in without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.netns import Topology
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.integration.ppp_env import (
    CLIENT_IP,
    SERVER_IP,
    User,
    client_toml,
    server_toml,
    wait_connected,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]


def test_reload_takes_new_users(topology: Topology, tmp_path: Path) -> None:
    srv = topology.host("srv")
    cli = topology.host("cli")
    topology.link(srv, f"{SERVER_IP}/24", cli, f"{CLIENT_IP}/24")
    server = ProductProcess(srv, "server", server_toml(tmp_path, [User("bob", "pw")]), tmp_path)
    server.start()
    assert server.ctl("reload") == {"users": 1}
    # carol is not a user yet: add her to the file, then reload.
    with open(server.config_path, "a") as f:
        f.write('\n[[users]]\nname = "carol"\npassword = "carol-pw"\n')
    assert server.ctl("reload") == {"users": 2}
    client = ProductProcess(
        cli, "client", client_toml(tmp_path, "carol", "carol-pw", auth="chap"), tmp_path / "c"
    )
    client.start()
    up = wait_connected(client, 40)
    [session] = server.sessions()
    assert session["user"] == "carol" and session["address"] == up.address
    # A broken file is refused with the reason, and the users in force stay.
    with open(server.config_path, "a") as f:
        f.write("\n[[users]]\nname = 7\n")
    with pytest.raises(RuntimeError, match="name"):
        server.ctl("reload")
    assert server.sessions()[0]["user"] == "carol"
    client.stop()
    assert_no_traceback(server.log_text())
