"""CURVE key files: created private whatever the umask, refused when others may read them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq.auth

from wsload.common.curve import coordinator_keys, generate, worker_keys
from wsload.common.errors import KeyFileError


@pytest.fixture
def umask() -> Iterator[None]:
    """The most permissive umask: files get exactly the mode they are created with."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask")
def test_secrets_are_0600_from_the_start_even_with_umask_0(tmp_path: Path) -> None:
    written = generate(tmp_path / "keys")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in written}
    assert modes["coordinator.key_secret"] == modes["worker.key_secret"] == 0o600
    assert modes["coordinator.key"] == 0o644
    # What wsload writes is what ZeroMQ's own loader reads.
    public, secret = zmq.auth.load_certificate(tmp_path / "keys" / "worker.key_secret")
    assert secret is not None
    keys = worker_keys(tmp_path / "keys")
    assert (keys.public, keys.secret) == (public, secret)
    assert coordinator_keys(tmp_path / "keys").authorized_dir == tmp_path / "keys" / "authorized"


def test_a_restrictive_umask_cannot_lock_the_owner_out(tmp_path: Path) -> None:
    old = os.umask(0o777)
    try:
        generate(tmp_path / "keys")
    finally:
        os.umask(old)
    assert worker_keys(tmp_path / "keys").secret


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o601])
def test_a_secret_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    generate(tmp_path / "keys")
    secret = tmp_path / "keys" / "worker.key_secret"
    secret.chmod(mode)
    with pytest.raises(KeyFileError, match=r"readable by others \(mode 0\d+\); run: chmod 600"):
        worker_keys(tmp_path / "keys")
    (tmp_path / "keys" / "coordinator.key_secret").chmod(mode)
    with pytest.raises(KeyFileError, match="readable by others"):
        coordinator_keys(tmp_path / "keys")


def test_owner_read_only_is_fine(tmp_path: Path) -> None:
    generate(tmp_path / "keys")
    (tmp_path / "keys" / "worker.key_secret").chmod(0o400)  # as Kubernetes mounts it
    assert worker_keys(tmp_path / "keys").secret


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "no public-key line"),
        (b'public-key = "short"\n', "not 40 Z85 characters"),
        (b"x" * 70_000, "larger than"),
    ],
)
def test_bad_key_files_are_one_line(tmp_path: Path, content: bytes, reason: str) -> None:
    generate(tmp_path / "keys")
    (tmp_path / "keys" / "coordinator.key").write_bytes(content)
    with pytest.raises(KeyFileError, match=reason) as err:
        worker_keys(tmp_path / "keys")
    assert "\n" not in str(err.value)


def test_a_device_is_not_a_key(tmp_path: Path) -> None:
    generate(tmp_path / "keys")
    target = tmp_path / "keys" / "coordinator.key"
    target.unlink()
    target.symlink_to("/dev/zero")
    with pytest.raises(KeyFileError, match="not a regular file"):
        worker_keys(tmp_path / "keys")


def test_existing_keys_are_never_overwritten(tmp_path: Path) -> None:
    generate(tmp_path / "keys")
    with pytest.raises(KeyFileError, match="keys already exist"):
        generate(tmp_path / "keys")
