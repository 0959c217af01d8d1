"""`cumulo up` and `cumulo down`: run the control plane (python -m cumulo.app) here or detached."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from cumulo.cli.render import console, err
from cumulo.core import settings
from cumulo.core.errors import CumuloError
from cumulo.sdk.client import Client


def _server_args(host: str, port: int, db: str | None, home: Path, no_auth: bool = False,
                 tls_cert: str | None = None, tls_key: str | None = None, alert_webhooks: list[str] | None = None) -> list[str]:
    args = [sys.executable, "-m", "cumulo.app", "--host", host, "--port", str(port), "--home", str(home)]
    for url in alert_webhooks or []:
        args += ["--alert-webhook", url]
    if no_auth:
        args.append("--no-auth")
    if tls_cert:
        args += ["--tls-cert", tls_cert]
    if tls_key:
        args += ["--tls-key", tls_key]
    return args + (["--db", db] if db else [])


def _healthy(url: str) -> bool:
    try:
        with Client(url, timeout=1.0) as c:
            c.health()
        return True
    except CumuloError:
        return False


def up(
    port: int = typer.Option(settings.DEFAULT_PORT, help="port to serve the API on"),
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    db: str = typer.Option(None, "--db", envvar="CUMULO_DATABASE_URL",
                           help="database URL, e.g. postgresql+psycopg://user:pass@host/db (default: SQLite in CUMULO_HOME)"),
    detach: bool = typer.Option(False, "--detach", "-d", help="run in the background and return once it is ready"),
    timeout: float = typer.Option(60.0, help="with --detach: seconds to wait for it to be ready"),
    no_auth: bool = typer.Option(False, "--no-auth", help="serve without tokens (allowed only on a loopback address)"),
    tls_cert: str = typer.Option(None, "--tls-cert", help="certificate file (PEM): serve HTTPS"),
    tls_key: str = typer.Option(None, "--tls-key", help="private key file (PEM) of --tls-cert"),
    alert_webhook: list[str] = typer.Option(None, "--alert-webhook", help="POST every alert that fires or resolves "
                                            "here, in Alertmanager's webhook format (repeatable; also "
                                            "CUMULO_ALERT_WEBHOOKS, space-separated)"),
) -> None:
    """Start the control plane: API, reconcilers and state (SQLite in CUMULO_HOME by default).

    On its first start it creates an admin token in $CUMULO_HOME/token (mode 0600), which the CLI
    and SDK on this machine use by themselves."""
    home = settings.home()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"{'https' if tls_cert else 'http'}://{shown}:{port}"
    args = _server_args(host, port, db, home, no_auth, tls_cert, tls_key, alert_webhook)
    token_file = home / "token"
    token_before = token_file.read_text() if token_file.exists() else None
    if not detach:
        os.execv(sys.executable, args)
    if _healthy(url):
        console.print(f"cumulo is already running at {url}")
        return
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    with console.status(f"starting cumulo at {url} ..."):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-10:]
                err.print(f"[red]error:[/] the control plane exited (code {proc.returncode}); last lines of {log_path}:")
                err.print("\n".join(tail), markup=False, highlight=False)
                raise typer.Exit(1)
            if _healthy(url):
                break
            time.sleep(0.1)
        else:
            err.print(f"[red]error:[/] cumulo did not become ready within {timeout:g}s; see {log_path}")
            raise typer.Exit(1)
    hint = "" if url == settings.server_url() else f"  (set CUMULO_URL={url} for other commands)"
    console.print(f"cumulo is running at {url} (pid {proc.pid}, log {log_path}){hint}")
    console.print(f"web console: {url}/ (sign in with the token in {token_file})")
    token_now = token_file.read_text() if token_file.exists() else None
    if token_now and token_now != token_before:  # first start: show the admin token this once
        console.print(f"admin token (saved in {token_file}, mode 0600; the CLI and SDK here find it there):")
        console.print(token_now.strip(), highlight=False, soft_wrap=True)


def down(timeout: float = typer.Option(30.0, help="seconds to wait for it to stop")) -> None:
    """Stop the control plane of this CUMULO_HOME. Running jobs keep running and are re-adopted by the next `cumulo up`."""
    home = settings.home()
    try:
        info = json.loads((home / "server.lock").read_text() or "{}")
    except (FileNotFoundError, json.JSONDecodeError):
        info = {}
    pid = info.get("pid")
    if not pid or not _pid_alive(pid):
        console.print(f"no cumulo control plane is running for CUMULO_HOME={home}")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    with console.status(f"stopping cumulo (pid {pid}) ..."):
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    if _pid_alive(pid):
        err.print(f"[red]error:[/] pid {pid} is still running after {timeout:g}s")
        raise typer.Exit(1)
    console.print("cumulo stopped")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not running
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
