"""One source of configuration for every entry point: the environment first, then the config
file, then the built-in default.

Every public constructor (the engines of the adapters, ``QdrantVectorizer``, ``WeaviateVectorizer``,
``index_with_ray``, ``ServerSettings``) and every ``jinaclip`` command take the defaults of the
settings below from here; an argument given explicitly always wins. The config file is TOML
(``$JINACLIP_CONFIG``, else ``$XDG_CONFIG_HOME/jinaclip/config.toml``, else
``~/.config/jinaclip/config.toml``) with the settings' names as keys.

=====================  =========================  =====================================================
setting                environment variable       default
=====================  =========================  =====================================================
model                  JINACLIP_MODEL             ``jinaai/jina-clip-v2`` (a hub name or a folder)
device                 JINACLIP_DEVICE            CUDA when available, else the CPU
dtype                  JINACLIP_DTYPE             bfloat16 on CUDA and CPUs with native bf16, else float32
store                  JINACLIP_STORE             ``~/.local/share/jinaclip/store`` (the user's data folder)
qdrant_url             JINACLIP_QDRANT_URL        none: the embedded store
qdrant_api_key         QDRANT_API_KEY             none
collection             JINACLIP_COLLECTION        ``jina-clip``
server                 JINACLIP_SERVER            none: ``search``/``embed`` load the model (a URL: they ask that server)
api_key                JINACLIP_API_KEY           none: the server needs no key (and clients send none)
max_body_mb            JINACLIP_MAX_BODY_MB       32
max_items              JINACLIP_MAX_ITEMS         2048
max_text_chars         JINACLIP_MAX_TEXT_CHARS    100000
max_image_pixels       JINACLIP_MAX_IMAGE_PIXELS  the engine's (about 89 megapixels)
max_request_pixels     JINACLIP_MAX_REQUEST_PIXELS 268435456 (256 Mi): all images of one request, from their headers
allow_image_urls       JINACLIP_ALLOW_IMAGE_URLS  false
allow_private_urls     JINACLIP_ALLOW_PRIVATE_URLS false
url_timeout_s          JINACLIP_URL_TIMEOUT_S     10
max_batch_items        JINACLIP_MAX_BATCH_ITEMS   64
max_wait_ms            JINACLIP_MAX_WAIT_MS       5
request_timeout_s      JINACLIP_REQUEST_TIMEOUT_S 120
body_timeout_s         JINACLIP_BODY_TIMEOUT_S    10: seconds a client has to send its whole request body
weaviate_open          JINACLIP_WEAVIATE_OPEN     false: the Weaviate routes need the key too
=====================  =========================  =====================================================

Booleans are ``1/true/yes/on`` or ``0/false/no/off``; an empty variable counts as unset. A value
that does not parse, or an unknown key in the file, is a ``JinaCLIPError`` naming it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import JinaCLIPError

#: ``int8``: int8 Linear weights (the ``int8`` extra), opt-in: never a default
DTYPES = ("float32", "bfloat16", "float16", "int8")


def default_store() -> str:
    """The embedded store's default folder, in the user's data directory."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return str(base / "jinaclip" / "store")


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean (1/true/yes/on or 0/false/no/off)")


def _dtype(text: str) -> str:
    if text not in DTYPES:
        raise ValueError(f"not one of {list(DTYPES)}")
    return text


@dataclass(frozen=True)
class Setting:
    """One setting: its environment variable, how a value is read, its built-in default (a
    value, or a function of nothing for defaults that depend on the machine)."""

    env: str
    parse: Callable[[str], Any] = str
    default: Any = None


SETTINGS: dict[str, Setting] = {
    "model": Setting("JINACLIP_MODEL", default="jinaai/jina-clip-v2"),
    "device": Setting("JINACLIP_DEVICE"),
    "dtype": Setting("JINACLIP_DTYPE", _dtype),
    "store": Setting("JINACLIP_STORE", default=default_store),
    "qdrant_url": Setting("JINACLIP_QDRANT_URL"),
    "qdrant_api_key": Setting("QDRANT_API_KEY"),
    "collection": Setting("JINACLIP_COLLECTION", default="jina-clip"),
    "server": Setting("JINACLIP_SERVER"),
    "api_key": Setting("JINACLIP_API_KEY"),
    "max_body_mb": Setting("JINACLIP_MAX_BODY_MB", float, 32.0),
    "max_items": Setting("JINACLIP_MAX_ITEMS", int, 2048),
    "max_text_chars": Setting("JINACLIP_MAX_TEXT_CHARS", int, 100_000),
    "max_image_pixels": Setting("JINACLIP_MAX_IMAGE_PIXELS", int),
    "max_request_pixels": Setting("JINACLIP_MAX_REQUEST_PIXELS", int, 256 * 1024 * 1024),
    "allow_image_urls": Setting("JINACLIP_ALLOW_IMAGE_URLS", _flag, False),
    "allow_private_urls": Setting("JINACLIP_ALLOW_PRIVATE_URLS", _flag, False),
    "url_timeout_s": Setting("JINACLIP_URL_TIMEOUT_S", float, 10.0),
    "max_batch_items": Setting("JINACLIP_MAX_BATCH_ITEMS", int, 64),
    "max_wait_ms": Setting("JINACLIP_MAX_WAIT_MS", float, 5.0),
    "request_timeout_s": Setting("JINACLIP_REQUEST_TIMEOUT_S", float, 120.0),
    "body_timeout_s": Setting("JINACLIP_BODY_TIMEOUT_S", float, 10.0),
    "weaviate_open": Setting("JINACLIP_WEAVIATE_OPEN", _flag, False),
}


def config_file() -> Path:
    """Where the config file is read from."""
    if os.environ.get("JINACLIP_CONFIG"):
        return Path(os.environ["JINACLIP_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "jinaclip" / "config.toml"


def _file_values() -> dict[str, Any]:
    path = config_file()
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        found = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise JinaCLIPError(f"cannot read the config file {path}: {exc}") from None
    if unknown := set(found) - set(SETTINGS):
        raise JinaCLIPError(f"unknown keys in {path}: {sorted(unknown)}; known: {sorted(SETTINGS)}")
    for name, value in found.items():
        try:
            found[name] = SETTINGS[name].parse(str(value).lower() if isinstance(value, bool) else str(value))
        except ValueError as exc:
            raise JinaCLIPError(f"{name} = {value!r} in {path}: {exc}") from None
    return found


def configured(name: str) -> Any:
    """The setting's value from the environment or the config file; None when neither sets it."""
    return _resolve(name, _file_values(), default=False)


def value(name: str) -> Any:
    """The setting's value: the environment, else the config file, else its default."""
    return _resolve(name, _file_values())


def values() -> dict[str, Any]:
    """Every setting's value (the config file read once)."""
    found = _file_values()
    return {name: _resolve(name, found) for name in SETTINGS}


def _resolve(name: str, found: dict[str, Any], *, default: bool = True) -> Any:
    setting = SETTINGS[name]
    text = os.environ.get(setting.env)
    if text:
        try:
            return setting.parse(text)
        except ValueError as exc:
            raise JinaCLIPError(f"${setting.env}={text!r}: {exc}") from None
    if name in found:
        return found[name]
    if not default:
        return None
    return setting.default() if callable(setting.default) else setting.default
