"""Entry point: `python run.py [--port N] [--config FILE]` starts one gateway node."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable

from buzzi import logs
from buzzi.broker.base import BrokerUnavailable
from buzzi.config import ConfigError, Settings, load_settings
from buzzi.runtime import Gateway
from buzzi.store.base import StoreUnavailable

log = logging.getLogger("buzzi")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one Buzzi realtime gateway node.")
    parser.add_argument("--port", type=int, help="listen port (overrides BUZZI_PORT and the config)")
    parser.add_argument("--host", help="listen address (overrides BUZZI_HOST and the config)")
    parser.add_argument("--config", help="TOML file overriding conf/buzzi.toml (or set BUZZI_CONFIG)")
    return parser.parse_args(argv)


async def serve(settings: Settings, on_ready: Callable[[Gateway], None] | None = None) -> int:
    from handlers.app import make_app
    from handlers.server import make_server

    gateway = Gateway(settings)
    try:
        await gateway.start()
    except (StoreUnavailable, BrokerUnavailable) as exc:
        log.error("cannot start: %s", exc)
        await _quiet_close(gateway)
        return 1
    server = make_server(make_app(gateway), settings)  # body limits and timeouts: handlers/server.py
    server.listen(settings.server.port, settings.server.host)
    _banner(gateway)
    if on_ready:
        on_ready(gateway)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info("shutting down: no new connections, ending streams, finishing work in flight")
    server.stop()
    await gateway.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.close_all_connections(), timeout=5)
    await gateway.webhooks.wait_idle()
    await gateway.stop()
    return 0


async def _quiet_close(gateway: Gateway) -> None:
    for closer in (gateway.broker.close, gateway.store.close):
        with contextlib.suppress(Exception):
            await closer()


def _banner(gateway: Gateway) -> None:
    s = gateway.settings
    base = f"http://{s.server.host}:{s.server.port}"
    lines = [f"Buzzi gateway node {gateway.node_id} listening on {base}",
             f"  admin dashboard: {base}/admin  (login {s.security.admin_email})"]
    if gateway.demo:
        lines.append(f"  demo web chat:   {base}/demo")
    if gateway.generated_admin_password:
        lines.append(f"  generated admin password (shown once): {gateway.generated_admin_password}")
    print("\n".join(lines), flush=True)


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
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
