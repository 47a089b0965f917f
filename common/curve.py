"""CURVE keys for the coordinator/worker link: generate, load, apply.

A key directory written by ``wsload keys generate DIR`` holds::

    coordinator.key, coordinator.key_secret   the coordinator's pair
    worker.key, worker.key_secret             a pair shared by the fleet's workers
    authorized/worker.key                     public keys the coordinator accepts

Secret files are created with mode 0600 (``os.open`` with the mode, then
``fchmod``, before a byte is written: no window where another user could
read them, whatever the umask), and a secret file that group or others may
read is refused when loaded, as ssh does. Key files are read with a size
bound (``/dev/zero`` is not a key). The coordinator accepts only workers
whose public key is in ``authorized/``; a worker accepts only the
coordinator whose public key is ``coordinator.key``. Copy the directory to
worker hosts without ``coordinator.key_secret``.

A single-host run (``wsload run``) needs no directory: :func:`ephemeral`
makes a key pair per run in memory, the coordinator authorises only that
run's worker key (in memory, :meth:`CurveKeys.authorize`), and the worker's
half travels to each local worker through an inherited pipe
(:func:`handoff` / :func:`read_handoff`, ``wsload worker --keys-fd``), never
on a command line (``/proc/PID/cmdline`` is world-readable) nor in a file.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from wsload.common.errors import KeyFileError


@dataclass(frozen=True)
class CurveKeys:
    """One side's key material, ready to apply to a socket."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None  # set on the worker side
    authorized_dir: Path | None = None  # set on the coordinator side
    #: Z85 public keys admitted besides (or instead of) ``authorized_dir``'s: held in memory
    authorized: frozenset[bytes] = frozenset()

    def authorize(self, auth: Any) -> None:
        """Tell the ZAP handler ``auth`` which worker keys may connect (coordinator side)."""
        if not self.authorized:
            auth.configure_curve(domain="*", location=str(self.authorized_dir))
            return
        allowed = set(self.authorized)
        if self.authorized_dir is not None:
            allowed.update(zmq.auth.load_certificates(self.authorized_dir))
        auth.configure_curve_callback(domain="*", credentials_provider=_KeySet(frozenset(allowed)))

    def apply_server(self, sock: Any) -> None:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)

    def apply_client(self, sock: Any) -> None:
        assert self.server_public is not None
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public)


class _KeySet:
    """A ZAP credentials provider: these Z85 public keys, no others."""

    def __init__(self, keys: frozenset[bytes]) -> None:
        self._keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self._keys


#: A key file is a few hundred bytes; anything far bigger is not one.
MAX_KEY_FILE = 64 * 1024
#: Permission bits a secret key file must not have (group or others may read/write/run).
SECRET_FORBIDDEN_BITS = 0o077


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
            public, secret = zmq.curve_keypair()
            written.append(_write(root / f"{name}.key", _certificate(public, None), 0o644))
            text = _certificate(public, secret)
            written.append(_write(root / f"{name}.key_secret", text, 0o600))
            if name == "worker":
                authorized = root / "authorized" / "worker.key"
                written.append(_write(authorized, _certificate(public, None), 0o644))
    except OSError as exc:
        raise KeyFileError(f"{root}: cannot write keys: {exc.strerror}") from None
    return written


def _certificate(public: bytes, secret: bytes | None) -> str:
    """ZeroMQ's certificate format (what ``zmq.auth.load_certificate`` reads)."""
    kind = "Secret" if secret else "Public"
    lines = [
        f"#   ****  Generated on {datetime.datetime.now():%Y-%m-%d %H:%M:%S} by wsload  ****",
        f"#   ZeroMQ CURVE **{kind}** Certificate",
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions."
        if secret
        else "#   ZeroMQ CURVE Public Certificate: share it freely.",
        "",
        "metadata",
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int) -> Path:
    """Create ``path`` (never overwrite) with exactly ``mode``, then write ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away (never added any)
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)
    return path


def _read(path: Path) -> bytes:
    """A key file's bytes: a regular file, bounded in size."""
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise KeyFileError(f"{path}: cannot read key (not a regular file)")
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key ({exc.strerror or exc})") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{path}: cannot read key (larger than {MAX_KEY_FILE} bytes)")
    return data


def _field(data: bytes, name: bytes) -> bytes | None:
    for line in data.splitlines():
        line = line.strip()
        if line.startswith(name):
            _, sep, value = line.partition(b"=")
            if sep:
                return value.strip(b" \t'\"")
    return None


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    if secret:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read key ({exc.strerror or exc})") from None
        if mode & SECRET_FORBIDDEN_BITS:
            raise KeyFileError(
                f"{path}: secret key readable by others (mode {mode:04o}); run: chmod 600 {path}"
            )
    data = _read(path)
    public, secret_key = _field(data, b"public-key"), _field(data, b"secret-key")
    for what, key in (("public", public), ("secret", secret_key)):
        if key is not None and not _z85_key(key):
            raise KeyFileError(f"{path}: cannot read key (the {what} key is not 40 Z85 characters)")
    if public is None:
        raise KeyFileError(f"{path}: cannot read key (no public-key line)")
    if secret and secret_key is None:
        raise KeyFileError(f"{path}: holds no secret key")
    return public, secret_key


_Z85 = frozenset(
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)


def _z85_key(key: bytes) -> bool:
    return len(key) == 40 and all(ch in _Z85 for ch in key)


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


# -- per-run keys for local workers ------------------------------------------

#: The first line of what :func:`handoff` writes (its version).
HANDOFF_MAGIC = b"wsload-keys 1"


def ephemeral(base: CurveKeys | None = None) -> tuple[CurveKeys, CurveKeys]:
    """(coordinator's keys, local workers' keys) for one run, made in memory.

    Without ``base`` the coordinator gets a fresh pair too and admits only
    the fresh worker key; with ``base`` (a coordinator started with
    ``--keys``) the fresh worker key is admitted beside ``authorized/``.
    """
    public, secret = zmq.curve_keypair()
    if base is None:
        server_public, server_secret = zmq.curve_keypair()
        server = CurveKeys(server_public, server_secret, authorized=frozenset({public}))
    else:
        server = replace(base, authorized=base.authorized | {public})
    return server, CurveKeys(public, secret, server_public=server.public)


def handoff(keys: CurveKeys) -> bytes:
    """A worker's keys as the bytes a local worker reads from ``--keys-fd``."""
    assert keys.server_public is not None
    return b"\n".join(
        [
            HANDOFF_MAGIC,
            b"server-key = " + keys.server_public,
            b"public-key = " + keys.public,
            b"secret-key = " + keys.secret,
            b"",
        ]
    )


@contextlib.contextmanager
def keys_pipe(keys: CurveKeys) -> Iterator[int]:
    """The read end of a pipe holding :func:`handoff` of ``keys``, for ``Popen(pass_fds=)``.

    Written and closed before the child starts (a few hundred bytes, under
    ``PIPE_BUF``: the write never blocks); closed here once the child has
    its copy. Not inheritable, so no other child gets it.
    """
    read_end, write_end = os.pipe()
    try:
        try:
            os.write(write_end, handoff(keys))
        finally:
            os.close(write_end)
        yield read_end
    finally:
        os.close(read_end)


def read_handoff(fd: int) -> CurveKeys:
    """Read a worker's keys from the inherited descriptor ``fd`` to its end, then close it.

    Bounded (a descriptor that never ends is not a key), and every failure
    is one line naming the descriptor.
    """
    what = f"--keys-fd {fd}"
    data = b""
    try:
        try:
            while len(data) <= MAX_KEY_FILE:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
    except OSError as exc:
        raise KeyFileError(f"{what}: cannot read keys ({exc.strerror or exc})") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{what}: cannot read keys (more than {MAX_KEY_FILE} bytes)")
    if not data.startswith(HANDOFF_MAGIC + b"\n"):
        raise KeyFileError(f"{what}: cannot read keys (not what wsload run hands its workers)")
    keys: list[bytes] = []
    for name in (b"server-key", b"public-key", b"secret-key"):
        key = _field(data, name)
        if key is None or not _z85_key(key):
            kind = name.decode()
            raise KeyFileError(f"{what}: cannot read keys (no valid {kind}: 40 Z85 characters)")
        keys.append(key)
    server, public, secret = keys
    return CurveKeys(public, secret, server_public=server)


__all__ = [
    "CurveKeys",
    "KeyFileError",
    "coordinator_keys",
    "ephemeral",
    "generate",
    "handoff",
    "keys_pipe",
    "read_handoff",
    "worker_keys",
]
