"""Local processes on this machine, each attempt watched by a small detached supervisor."""

from cumulo.runtimes.local.runtime import LocalRuntime

__all__ = ["LocalRuntime"]
