"""CURVE keys for the coordinator/worker link: generate, load, apply.

A key directory written by ``wsload keys generate DIR`` holds::

    coordinator.key, coordinator.key_secret   the coordinator's pair
    worker.key, worker.key_secret             a pair shared by the fleet's workers
    authorized/worker.key                     public keys the coordinator accepts

Secret files are written with 0600 permissions. The coordinator accepts only
workers whose public key is in ``authorized/``; a worker accepts only the
coordinator whose public key is ``coordinator.key``. Copy the directory to
worker hosts without ``coordinator.key_secret``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from common.errors import KeyFileError


@dataclass(frozen=True)
class CurveKeys:
    """One side's key material, ready to apply to a socket."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None  # set on the worker side
    authorized_dir: Path | None = None  # set on the coordinator side

    def apply_server(self, sock: Any) -> None:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)

    def apply_client(self, sock: Any) -> None:
        assert self.server_public is not None
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public)


def generate(directory: str | Path) -> list[Path]:
    """Create the key directory; refuses to overwrite existing keys."""
    root = Path(directory)
    if (root / "coordinator.key_secret").exists():
        raise KeyFileError(f"{root}: keys already exist there; remove them first")
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / "authorized").mkdir(exist_ok=True)
        written: list[Path] = []
        for name in ("coordinator", "worker"):
            public, secret = zmq.auth.create_certificates(root, name)
            os.chmod(secret, 0o600)
            written += [Path(public), Path(secret)]
        shutil.copy(root / "worker.key", root / "authorized" / "worker.key")
        written.append(root / "authorized" / "worker.key")
    except OSError as exc:
        raise KeyFileError(f"{root}: cannot write keys: {exc.strerror}") from None
    return written


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: cannot read key ({exc})") from None
    if secret and secret_key is None:
        raise KeyFileError(f"{path}: holds no secret key")
    return public, secret_key


def coordinator_keys(directory: str | Path) -> CurveKeys:
    root = Path(directory)
    public, secret = _load(root / "coordinator.key_secret", secret=True)
    authorized = root / "authorized"
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise KeyFileError(f"{authorized}: no authorised worker keys (*.key)")
    assert secret is not None
    return CurveKeys(public, secret, authorized_dir=authorized)


def worker_keys(directory: str | Path) -> CurveKeys:
    root = Path(directory)
    public, secret = _load(root / "worker.key_secret", secret=True)
    server_public, _ = _load(root / "coordinator.key", secret=False)
    assert secret is not None
    return CurveKeys(public, secret, server_public=server_public)


__all__ = ["CurveKeys", "KeyFileError", "coordinator_keys", "generate", "worker_keys"]
