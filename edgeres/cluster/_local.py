"""A Ray cluster of several nodes on this machine, for tests, benchmarks and trying the fleet.

``LocalCluster`` runs ``ray start --head`` and one more ``ray start --address`` per extra node,
every one bound to 127.0.0.1 with a fixed CPU count and its own custom resources (such as
``edgeres-device:fake-arm``), and ``stop()`` ends them with ``ray stop``. Ray's temporary
files go under the given folder, whose path is kept short: Ray's Unix socket paths under it
must stay below the ~107-byte limit of ``sockaddr_un``.

It refuses to start outside a loopback-only network namespace (``non_loopback_interfaces``).

``ray stop`` ends every Ray process of this user on this machine (it has no per-cluster
switch), so run one local cluster at a time. ``leftovers()`` lists processes still carrying
the cluster's temporary folder, so a caller can check nothing is left running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from edgeres.cluster import ClusterError, import_ray
from edgeres.errors import first_line

LOCALHOST = "127.0.0.1"
_START_TIMEOUT_S = 120
_STOP_TIMEOUT_S = 120
_SOCKET_PATH_LIMIT = 107  # bytes in sockaddr_un.sun_path, less the terminating NUL


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def non_loopback_interfaces() -> list[str]:
    """Network interfaces of this namespace besides ``lo``.

    Ray 2.60 registers the nodes of a multi-node cluster on the host's own address even when
    each is started with ``--node-ip-address 127.0.0.1``, and its servers listen on every
    interface; only a network namespace whose one interface is loopback keeps a local cluster
    on 127.0.0.1.
    """
    return [name for _, name in socket.if_nameindex() if name != "lo"]


def _ray_command() -> str:
    """The ``ray`` launcher of this interpreter's environment."""
    import_ray()
    here = Path(sys.executable).with_name("ray")
    return str(here) if here.is_file() else "ray"


class LocalCluster:
    """A head node plus extra nodes, all on this machine at 127.0.0.1.

    Args:
        temp_dir: Ray's ``--temp-dir`` (short: Ray's socket paths live under it).
        nodes: custom resources of each extra node, e.g. ``[{"edgeres-device:fake-arm": 1}]``.
        num_cpus: CPUs each node advertises.
        head_resources: custom resources of the head.
        env: extra environment for the Ray processes (``RAY_health_check_period_ms``, ...).
    """

    def __init__(self, temp_dir: Path, nodes: list[dict[str, float]] | None = None, *,
                 num_cpus: int = 1, head_resources: dict[str, float] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.temp_dir = Path(temp_dir)
        self.nodes = list(nodes or [])
        self.num_cpus = num_cpus
        self.head_resources = dict(head_resources or {})
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        self.env.pop("RAY_ADDRESS", None)  # never join a cluster the caller's shell points at
        self.port: int | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` of the head."""
        if self.port is None:
            msg = "the local cluster is not started"
            raise ClusterError(msg)
        return f"{LOCALHOST}:{self.port}"

    def _ray(self, *args: str, timeout: float = _START_TIMEOUT_S) -> str:
        cmd = [_ray_command(), *args]
        try:
            out = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                                 timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            msg = f"`ray {args[0]}` did not finish: {first_line(e)}"
            raise ClusterError(msg) from None
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
            msg = f"`ray {' '.join(args[:2])}` failed: {' / '.join(tail)}"
            raise ClusterError(msg)
        return out.stdout

    def start(self) -> str:
        """Start the head and every extra node; return the head's address.

        Raises:
            ClusterError: if a node does not start (the ones started are stopped again).
        """
        others = non_loopback_interfaces()
        if others:
            msg = (f"this machine has network interfaces besides lo ({', '.join(others)}) and "
                   "Ray would register the cluster on the host's address instead of 127.0.0.1; "
                   "run inside a loopback-only network namespace: unshare --net sh -c "
                   "'ip link set lo up && exec COMMAND' (as `make test-cluster` does)")
            raise ClusterError(msg)
        if len(str(self.temp_dir)) > _SOCKET_PATH_LIMIT - 60:
            msg = f"--temp-dir {self.temp_dir} is too long for Ray's socket paths; use a shorter"
            raise ClusterError(msg)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        common = ["--node-ip-address", LOCALHOST, "--num-cpus", str(self.num_cpus),
                  "--disable-usage-stats", "--temp-dir", str(self.temp_dir)]
        try:
            self._ray("start", "--head", "--port", str(self.port), "--include-dashboard=false",
                      "--resources", json.dumps(self.head_resources), *common)
            for resources in self.nodes:
                self.add_node(resources)
        except ClusterError:
            self.stop()
            raise
        return self.address

    def add_node(self, resources: dict[str, float]) -> None:
        """Join one more node with ``resources`` to the running head."""
        self._ray("start", "--address", self.address, "--resources", json.dumps(resources),
                  "--node-ip-address", LOCALHOST, "--num-cpus", str(self.num_cpus),
                  "--disable-usage-stats", "--temp-dir", str(self.temp_dir))

    def stop(self) -> list[int]:
        """``ray stop`` every node; return the processes of this cluster still running."""
        try:
            self._ray("stop", timeout=_STOP_TIMEOUT_S)
        except ClusterError:
            self._ray("stop", "--force", timeout=_STOP_TIMEOUT_S)
        deadline = time.monotonic() + 30
        left = self.leftovers()
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = self.leftovers()
        return left

    def leftovers(self) -> list[int]:
        """PIDs of live processes whose command line or environment names the temp folder."""
        mark = str(self.temp_dir).encode()
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
                environ = (proc / "environ").read_bytes() if cmdline.startswith(b"ray::") else b""
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and (mark in cmdline or mark in environ):
                found.append(int(proc.name))
        return found

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
