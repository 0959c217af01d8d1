"""Secrets: create, list (names and dates only), delete, rotate the key; and the values a
workload's environment needs, for the reconcilers. A value leaves this module only towards a
workload's process: never in a view, an event or an error message."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from cumulo.core.errors import Conflict, InvalidSpec, NotFound
from cumulo.core.keyring import Keyring
from cumulo.core.specs import SecretRef, secret_refs, validate_name
from cumulo.core.tokens import DEFAULT_WORKSPACE, Scope
from cumulo.core.views import SecretView
from cumulo.store import secrets as store
from cumulo.store.db import Database
from cumulo.store.models import Secret

MAX_VALUE = 64 * 1024
SYSTEM = Scope()


class SecretService:
    def __init__(self, db: Database, keyring: Keyring, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.keyring = keyring
        self.now = now

    def create(self, name: str, value: str, *, overwrite: bool = False, scope: Scope = SYSTEM) -> SecretView:
        try:
            validate_name(name)
        except ValueError as exc:
            raise InvalidSpec(f"name: {exc}", errors=[{"field": "name", "message": str(exc)}]) from None
        if not value or len(value.encode()) > MAX_VALUE or "\0" in value:
            msg = "a secret's value must be 1 byte to 64 KiB of text without NUL bytes"
            raise InvalidSpec(f"value: {msg}", errors=[{"field": "value", "message": msg}])
        sealed = self.keyring.seal(value.encode(), _aad(name, scope.workspace))
        now = self.now()
        with self.db.tx() as s:
            row = store.get(s, name, scope.workspace)
            if row is not None and not overwrite:
                raise Conflict(f"a secret named {name!r} exists; give --overwrite to replace its value")
            if row is None:
                row = Secret(name=name, workspace=scope.workspace, sealed=sealed, created_at=now, updated_at=now)
                s.add(row)
            else:
                row.sealed, row.updated_at = sealed, now
            s.flush()
            return _view(row)

    def list(self, scope: Scope = SYSTEM) -> list[SecretView]:
        with self.db.tx() as s:
            return [_view(r) for r in store.listed(s, scope.workspace)]

    def delete(self, name: str, scope: Scope = SYSTEM) -> None:
        with self.db.tx() as s:
            row = store.get(s, name, scope.workspace)
            if row is None:
                raise NotFound(f"no secret named {name!r}; `cumulo secret list` shows them")
            users = store.users(s, name, scope.workspace)
            if users:
                raise Conflict(f"the secret {name!r} is used by {', '.join(users)}; delete or change those first")
            s.delete(row)

    def rotate_key(self) -> int:
        """Put a new key first (kept in $CUMULO_HOME/secret.key) and re-seal every secret with it;
        old keys stay to decrypt. Returns how many secrets were re-sealed."""
        self.keyring = self.keyring.rotated()
        n = 0
        with self.db.tx() as s:
            for row in store.every(s):
                if not self.keyring.sealed_with_first(row.sealed):
                    aad = _aad(row.name, row.workspace)
                    row.sealed = self.keyring.seal(self.keyring.open(row.sealed, aad), aad)
                    n += 1
        return n

    def values(self, env: dict[str, str | SecretRef], workspace: str = DEFAULT_WORKSPACE) -> dict[str, str]:
        """The environment with each secret reference replaced by its value (for a workload)."""
        refs = secret_refs(env)
        if not refs:
            return dict(env)  # type: ignore[arg-type]
        out = {k: v for k, v in env.items() if not isinstance(v, SecretRef)}
        with self.db.tx() as s:
            for var, name in refs.items():
                row = store.get(s, name, workspace)
                if row is None:
                    raise NotFound(f"env.{var}: the secret {name!r} no longer exists; create it again")
                out[var] = self.keyring.open(row.sealed, _aad(name, row.workspace)).decode()
        return out  # type: ignore[return-value]


def _aad(name: str, workspace: str) -> str:
    return f"{workspace}/{name}"


def _view(r: Secret) -> SecretView:
    return SecretView(name=r.name, workspace=r.workspace, created_at=r.created_at, updated_at=r.updated_at)
