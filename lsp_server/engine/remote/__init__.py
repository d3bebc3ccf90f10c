"""Remote engines: generation on llama.cpp's llama-server or an OpenAI-compatible server, with
the same token streams as the in-process engine (docs/deployment.md)."""

from .apis import APIS, RemoteRequest, get_api
from .engine import RemoteEngine, RemoteHealth
from .http import RemoteError

__all__ = ["APIS", "RemoteEngine", "RemoteError", "RemoteHealth", "RemoteRequest", "get_api"]
