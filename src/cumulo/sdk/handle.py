"""Call a deployment's handlers as methods, through the gateway: `client.deployment("digits").predict(...)`.

The methods come from the service's own OpenAPI (`/openapi.json` behind the gateway): one per POST
path, named after it (`/predict` -> `predict`). Keyword arguments become the JSON body.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx

from cumulo.core.errors import CumuloError, ServerUnavailable, from_problem
from cumulo.core.specs import describe_errors, field_errors


class DeploymentHandle:
    def __init__(self, url: str, name: str, *, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.name = name
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        self._paths: dict[str, str] | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DeploymentHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach {self.url} ({type(exc).__name__}); is `cumulo up` running?") from None
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = {"detail": r.text}
            if isinstance(body, dict) and isinstance(body.get("detail"), list):  # a replica's 422: name the fields
                errors = field_errors(body["detail"], strip=("body", "query"))
                body = {"title": "Invalid request", "detail": f"{self.name}{path}: {describe_errors(errors)}",
                        "errors": errors}
            elif isinstance(body, dict) and "detail" in body and not isinstance(body["detail"], str):
                body = {"detail": str(body["detail"])}
            raise from_problem(r.status_code, body if isinstance(body, dict) else {"detail": str(body)})
        return r

    def methods(self) -> dict[str, str]:
        """Handler name -> path, from the service's OpenAPI."""
        if self._paths is None:
            spec = self._send("GET", "/openapi.json").json()
            self._paths = {
                path.strip("/").replace("/", "_").replace("-", "_"): path
                for path, ops in spec.get("paths", {}).items()
                if "post" in ops
            }
        return self._paths

    def call(self, path: str, **body: Any) -> Any:
        return self._send("POST", path, json=body).json()

    def stream(self, path: str, **body: Any) -> Iterator[str]:
        """Yield a streaming handler's output chunk by chunk."""
        with self._http.stream("POST", path, json=body) as r:
            if r.status_code >= 400:
                r.read()
                raise CumuloError(f"{self.name}{path}: HTTP {r.status_code}: {r.text}")
            yield from r.iter_text()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        paths = self.methods()
        if name not in paths:
            raise AttributeError(f"deployment {self.name!r} has no handler {name!r}; it has: {', '.join(paths) or 'none'}")
        path = paths[name]
        return lambda **body: self.call(path, **body)
