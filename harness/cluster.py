"""Several real instances of the service on one real PostgreSQL, behind a round-robin HAProxy.

    with Cluster(tmp_path, size=3) as cluster:
        httpx.post(f"{cluster.api}/start", ...)           # through the proxy, round robin
        httpx.get(f"{cluster['node-2'].api}/health")      # one instance directly
        cluster.kill("node-2")                            # SIGKILL; the proxy takes it out
        cluster.restart("node-2")                         # same port, back in the rotation

Each instance is `python app.py` (harness.app_server.AppServer) with INSTANCE_ID set to its name
(node-1, node-2, ...), the proxy's server name too, so the X-Served-By header of a response
(harness.haproxy.SERVED_BY) and the proxy's access log say which instance answered.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from harness.app_server import AppServer
from harness.haproxy import Backend, HAProxy
from harness.postgres import PostgresServer

# The service's own defaults (interview/config.py): each instance pools up to this many
# connections; the LISTEN connection and the session locks' may come on top.
DEFAULT_DB_CONNECTIONS = 10 + 20
SPARE_CONNECTIONS = 40  # the tests' own checks, psql, and connections not yet given back
# As the CDK stack runs them behind the ALB: an instance keeps an idle connection longer than the
# proxy does, so the proxy never sends a request on one the instance is closing (a reset).
BEHIND_A_PROXY = {"HTTP_KEEP_ALIVE_SECONDS": "65", "DRAIN_MIN_SECONDS": "5"}


def postgres_for(instances: int, per_instance: int = DEFAULT_DB_CONNECTIONS) -> PostgresServer:
    """A PostgreSQL server with room for `instances` instances' pools at their peak."""
    return PostgresServer(max_connections=instances * (per_instance + 5) + SPARE_CONNECTIONS)


class Cluster:
    """`size` instances on one database behind one HAProxy.

    `postgres`: a running server to make the database on (its max_connections must hold every
    instance's pool: `postgres_for`); without it the cluster starts and stops its own.
    `env`: settings for every instance, over BEHIND_A_PROXY (DATABASE_URL and INSTANCE_ID are
    the cluster's).
    `start_timeout`: per instance; voice instances load their speech models first.
    """

    def __init__(
        self,
        directory: Path,
        size: int = 3,
        env: Mapping[str, str] | None = None,
        *,
        postgres: PostgresServer | None = None,
        start_timeout: float = 60,
    ) -> None:
        if not 1 <= size <= 9:
            raise ValueError("a cluster has 1 to 9 instances")
        self.directory = directory
        self.env = {**BEHIND_A_PROXY, **(env or {})}
        self.postgres = postgres
        self._owns_postgres = postgres is None
        self.start_timeout = start_timeout
        self.names = [f"node-{i + 1}" for i in range(size)]
        self.database_url: str | None = None
        self.instances: dict[str, AppServer] = {}
        self.proxy: HAProxy | None = None
        self._terminated: set[str] = set()  # told to stop (SIGTERM): they may still be draining

    # -- addresses --------------------------------------------------------------------------

    @property
    def api(self) -> str:
        """The API through the proxy: where a client (or an ALB's listener) points."""
        assert self.proxy is not None, "start() the cluster first"
        return self.proxy.api

    def __getitem__(self, name: str) -> AppServer:
        """One instance by name, to address it directly (`cluster["node-1"].api`)."""
        return self.instances[name]

    def others(self, name: str) -> list[str]:
        return [n for n in self.names if n != name]

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Cluster:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.postgres is None:
            self.postgres = postgres_for(len(self.names))
            self.postgres.start()
        self.database_url = self.postgres.create_database()
        for name in self.names:
            env = {**self.env, "DATABASE_URL": self.database_url, "INSTANCE_ID": name}
            self.instances[name] = AppServer(self.directory / f"{name}.log", env)
        # Together: the schema migration takes turns under its own lock (interview/store).
        self._each(lambda server: server.start(timeout=self.start_timeout))
        self.proxy = HAProxy(
            [Backend(name, server.port) for name, server in self.instances.items()],
            self.directory,
        )
        self.proxy.start()
        self.proxy.wait_states(dict.fromkeys(self.names, "UP"))
        return self

    def stop(self) -> None:
        """The proxy, then every instance (SIGTERM, SIGKILL if it hangs), then the database
        server if the cluster started it."""
        try:
            if self.proxy is not None:
                self.proxy.stop()

            def stop_one(server: AppServer) -> None:
                try:
                    server.stop()
                except Exception:
                    server.kill()

            self._each(stop_one)
        finally:
            if self._owns_postgres and self.postgres is not None:
                self.postgres.stop()
                self.postgres = None

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def kill(self, name: str, wait_down: bool = True) -> None:
        """SIGKILL one instance (a crash: no shutdown code runs); by default until the proxy
        has taken it out of the rotation."""
        self.instances[name].kill()
        if wait_down:
            self.wait_state(name, "DOWN")

    def terminate(self, name: str) -> None:
        """SIGTERM one instance, as ECS stops a task, and return at once (it drains)."""
        process = self.instances[name].process
        assert process is not None and process.poll() is None, f"{name} is not running"
        process.send_signal(signal.SIGTERM)
        self._terminated.add(name)

    def wait_exit(self, name: str, timeout: float) -> int:
        """The exit code of an instance that was told to stop."""
        process = self.instances[name].process
        assert process is not None
        return process.wait(timeout=timeout)

    def restart(self, name: str) -> None:
        """Start a stopped (or killed) instance again on its port, under its name, and wait
        until the proxy sends it requests again."""
        server = self.instances[name]
        if server.process is not None and server.process.poll() is None:
            raise RuntimeError(f"{name} is still running")
        self._terminated.discard(name)
        server.start(timeout=self.start_timeout)
        self.wait_state(name, "UP")

    def running(self) -> list[str]:
        return [
            name
            for name, server in self.instances.items()
            if server.process is not None and server.process.poll() is None
        ]

    def ensure_all_up(self, drain_timeout: float = 30) -> None:
        """Restart whatever a previous test stopped (an instance still draining after SIGTERM
        is given `drain_timeout` seconds to exit, then killed), then wait until all are in
        rotation."""
        for name in self.names:
            server = self.instances[name]
            if name in self._terminated and server.process is not None:
                try:
                    server.process.wait(timeout=drain_timeout)
                except subprocess.TimeoutExpired:
                    server.kill()
                self._terminated.discard(name)
            if name not in self.running():
                server.start(timeout=self.start_timeout)
        assert self.proxy is not None
        self.proxy.wait_states(dict.fromkeys(self.names, "UP"))

    def wait_state(self, name: str, state: str, timeout: float = 20) -> None:
        assert self.proxy is not None
        self.proxy.wait_states({name: state}, timeout)

    def logs(self) -> dict[str, str]:
        """Each instance's log (and the proxy's access log), for a failing test's message."""
        found = {name: server.log() for name, server in self.instances.items()}
        if self.proxy is not None:
            found["haproxy"] = self.proxy.log()
        return found

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {name} (last {lines} lines)\n" + "\n".join(text.splitlines()[-lines:])
            for name, text in self.logs().items()
        )

    def _each(self, action: Callable[[AppServer], None]) -> None:
        """Run `action(server)` for every instance at once (each start waits for its health)."""
        with ThreadPoolExecutor(max_workers=len(self.instances)) as pool:
            for future in [pool.submit(action, s) for s in self.instances.values()]:
                future.result()
