"""Entry point: `python run.py [--port N] [--config FILE]` starts one gateway node.

By default the node is this one process. With server.processes > 1 or inbox.processes > 0 this
process becomes the node's supervisor (buzzi/processes.py) and each web or answer process runs
`child_main` below in a spawned interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection

from buzzi import logs
from buzzi.broker.base import BrokerUnavailable
from buzzi.config import ConfigError, Settings, load_settings
from buzzi.processes import READY, ChildSpec, Supervisor, is_multi, plan
from buzzi.runtime import ROLE_ALL, ROLE_ANSWER, Bootstrapped, Gateway, bootstrap
from buzzi.store.base import StoreUnavailable

log = logging.getLogger("buzzi")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one Buzzi realtime gateway node.")
    parser.add_argument("--port", type=int, help="listen port (overrides BUZZI_PORT and the config)")
    parser.add_argument("--host", help="listen address (overrides BUZZI_HOST and the config)")
    parser.add_argument("--config", help="TOML file overriding conf/buzzi.toml (or set BUZZI_CONFIG)")
    return parser.parse_args(argv)


async def serve(settings: Settings, on_ready: Callable[[Gateway], None] | None = None, *,
                role: str = ROLE_ALL, supervisor: Connection | None = None) -> int:
    """Run one process of a node until SIGTERM/SIGINT. `supervisor`: the pipe to run.py's
    supervisor when this is one of several processes (ready is reported there, not printed)."""
    from buzzi.gctuning import tune_for_serving
    from handlers.app import make_app
    from handlers.server import listen, make_server

    gateway = Gateway(settings, role)
    try:
        await gateway.start()
    except (StoreUnavailable, BrokerUnavailable) as exc:
        log.error("cannot start: %s", exc)
        await _quiet_close(gateway)
        return 1
    tune_for_serving()  # thousands of open streams: see buzzi/gctuning.py
    server = None
    if role != ROLE_ANSWER:
        server = make_server(make_app(gateway), settings)  # body limits and timeouts: handlers/server.py
        try:
            listen(server, settings, shared_port=supervisor is not None)
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", settings.server.host, settings.server.port, exc)
            await gateway.stop()
            return 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if supervisor is None:
        _banner(settings, gateway.node_id, gateway.demo, gateway.generated_admin_password)
    else:
        # The supervisor never writes: the pipe turns readable only at EOF, when it has died.
        loop.add_reader(supervisor.fileno(), stop.set)
        supervisor.send(READY)
    if on_ready:
        on_ready(gateway)
    await stop.wait()

    log.info("shutting down: no new connections, ending streams, finishing work in flight")
    if server is not None:
        server.stop()
    await gateway.drain()
    if server is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.close_all_connections(), timeout=5)
    await gateway.webhooks.wait_idle()
    await gateway.stop()
    return 0


def child_main(spec: ChildSpec, supervisor: Connection) -> None:
    """One web or answer process of a several-process node (started by buzzi/processes.py)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until serve() handles it: no KeyboardInterrupt trace
    logs.configure(spec.settings.server.log_format, spec.settings.server.log_level)
    sys.exit(asyncio.run(serve(spec.settings, role=spec.role, supervisor=supervisor)))


def supervise(settings: Settings) -> int:
    """The node as several processes: first-start work once here, then the children."""
    try:
        boot = asyncio.run(bootstrap(settings))
    except (StoreUnavailable, BrokerUnavailable) as exc:
        log.error("cannot start: %s", exc)
        return 1
    specs = plan(settings)
    supervisor = Supervisor(specs, child_main, settings.server.shutdown_grace_seconds,
                            on_all_ready=lambda: _multi_banner(settings, specs, boot))
    code = supervisor.run()
    log.info("node %s stopped (exit %d)", settings.node_id, code)
    return code


async def _quiet_close(gateway: Gateway) -> None:
    for closer in (gateway.broker.close, gateway.store.close):
        with contextlib.suppress(Exception):
            await closer()


def _banner(s: Settings, node: str, demo: tuple[str, str] | None, password: str | None) -> None:
    base = f"http://{s.server.host}:{s.server.port}"
    lines = [f"Buzzi gateway node {node} listening on {base}",
             f"  admin dashboard: {base}/admin  (login {s.security.admin_email})"]
    if demo:
        lines.append(f"  demo web chat:   {base}/demo")
    if password:
        lines.append(f"  generated admin password (shown once): {password}")
    print("\n".join(lines), flush=True)


def _multi_banner(settings: Settings, specs: list[ChildSpec], boot: Bootstrapped) -> None:
    web = [s.node_id for s in specs if s.role != ROLE_ANSWER]
    answer = [s.node_id for s in specs if s.role == ROLE_ANSWER]
    node = (f"{settings.node_id} ({len(web)} web process{'es' * (len(web) != 1)}: {', '.join(web)}; "
            f"{len(answer)} answer process{'es' * (len(answer) != 1)}{': ' if answer else ''}{', '.join(answer)})")
    _banner(settings, node, boot.demo, boot.generated_admin_password)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides: dict[str, dict] = {"server": {}}
    if args.port is not None:
        overrides["server"]["port"] = args.port
    if args.host is not None:
        overrides["server"]["host"] = args.host
    try:
        settings = load_settings(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"buzzi: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.server.log_format, settings.server.log_level)
    if is_multi(settings):
        return supervise(settings)
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
