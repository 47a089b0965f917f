"""What the in-process engine suites share: each test runs on every client engine.

Import ``each_engine`` (the autouse fixture, named ``engine``) and
``spec_for`` into a test module; :func:`engine_name` is the engine of the
test running.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from wsload.common.spec import ENGINES, JobSpec, build_spec

_ENGINE = {"name": "auto"}


@pytest.fixture(name="engine", autouse=True, params=ENGINES)
def each_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test of a module that imports this runs on each engine: both must pass it."""
    _ENGINE["name"] = request.param
    yield request.param
    _ENGINE["name"] = "auto"


def engine_name() -> str:
    """The client engine of the test running."""
    return _ENGINE["name"]


def spec_for(url: str, **overrides: Any) -> JobSpec:
    """A job towards ``url`` on the test's engine (build_spec's defaults otherwise)."""
    return build_spec(env={}, ws_url=url, engine=engine_name(), **overrides)
