"""The fan-out parts of the step language: ``[deliveries]``, ``publish`` and ``post``, checked.

A subscriber's program says which received messages are deliveries and
where their identity lives; a publisher's step says that what it sends is
a publication; an HTTP publisher is a ``post`` step::

    [deliveries]                 # or [scenarios.deliveries] in a [[scenarios]] entry
    match = {type = "delivery"}  # a JSON subset (or an exact text): which messages
    topic = "topic"              # dotted paths into a delivery: its topic,
    seq = "seq"                  # its publication number (an integer; required)
    sent_at = "sent_at"          # and its publish time, epoch seconds
    topics = ["news-{room}"]     # subscribed once [[steps]] are done (templates)
    source = "wsload"            # or "server": a stream the service publishes itself

    [[loop]]
    send = {type = "publish", topic = "news", seq = "{seq}", sent_at = "{ts}"}
    publish = {topic = "news", seq = "{seq}"}     # on a send or a post step only
    [[loop]]
    post = {url = "/api/publish", body = {topic = "news", seq = "{seq}"}, method = "POST"}
    publish = {topic = "news", seq = "{seq}"}     # post = "/api/publish": the url alone

The semantics are in :mod:`wsload.common.program` (:class:`Deliveries`,
:class:`Publish`, :class:`HttpPost`). Each function here returns the typed
value or every problem with it (lines without their location: the caller
adds it) and the variables its templates read, so that the step compiler
checks them like any other template's (``[deliveries]`` checks its own).
What can be known before the run is checked: a ``seq`` renders to an
integer (an integer, or exactly one placeholder of an integer value:
``{seq}``, ``{random_int(a,b)}`` or a captured variable; never ``{ts}``,
``{client_id}``, ``{pad}``, ``{uuid}`` or a feeder column, which are not
integers), an absolute URL is http(s) without a fragment, a relative one
starts with ``/`` and is a path on the host of the job's ``api_url``
(resolved as a link is, :func:`urllib.parse.urljoin`: ``/api/publish``
with ``http://host:9000/api`` is ``http://host:9000/api/publish``). A
``body`` table renders as a JSON value (a
:class:`wsload.common.template.ValueTemplate`: a placeholder alone keeps
its value's type) that the worker sends as ``application/json``, a text
as it is (a :class:`wsload.common.template.TextTemplate`). What needs
more than one value (a program's deliveries beside its steps, the
programs of a run together) is checked in
:mod:`wsload.common.fanout_checks`. No I/O here.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from wsload.common.match import compile_matcher, path_problem
from wsload.common.program import (
    Deliveries,
    HttpPost,
    Publish,
    Renderer,
)
from wsload.common.stepvalues import did_you_mean, unknown_keys, value_shape_problem
from wsload.common.template import (
    TextTemplate,
    ValueTemplate,
    unknown_variable_problems,
)
from wsload.common.validation import describe, display_url

DELIVERIES_KEYS = ("match", "topic", "seq", "sent_at", "topics", "source")
PUBLISH_KEYS = ("topic", "seq")
POST_KEYS = ("url", "body", "method")
SOURCES = ("wsload", "server")
METHODS = ("POST", "PUT", "PATCH", "GET")
#: Most topics one client may be subscribed to.
MAX_TOPICS = 1000
#: Longest topic or path (a metric name and a key of every report).
MAX_TOPIC_LENGTH = 200
#: Placeholders whose value is never an integer (``{ts}`` is epoch seconds, a float).
_NOT_INTEGERS = {"ts": "epoch seconds, a float", "client_id": "text", "pad": "text"}


def parse_deliveries(
    raw: Any, known: Collection[str] | None, later: Collection[str] = ()
) -> tuple[Deliveries | None, list[str]]:
    """A ``[deliveries]`` table: the value (None when it has problems) and its problems.

    ``known`` are the variables its templates may use besides the built-ins
    (the feeder's columns and what ``[[steps]]`` capture; None: the feeder
    could not be read, so any variable may be one of its columns);
    ``later`` are those captured only in ``[[loop]]``, after the
    subscription starts, for a clearer message.
    """
    if not isinstance(raw, dict):
        return None, [f"expected a table, got {describe(raw)}"]
    if (shape := value_shape_problem(raw)) is not None:
        return None, [f"the table is {shape}"]
    problems = unknown_keys(raw, DELIVERIES_KEYS)
    names: set[str] = set()
    matcher = None
    if "match" in raw:
        value = raw["match"]
        if not isinstance(value, dict | str):
            problems.append(
                "match takes a table (a JSON subset of a delivery) or an exact text, "
                f"got {describe(value)}"
            )
        else:
            matcher = compile_matcher(value)
            problems += [f"match: {p}" for p in matcher.problems]
            names |= matcher.names
    paths: dict[str, str | None] = {}
    for key in ("topic", "seq", "sent_at"):
        path = raw.get(key)
        paths[key] = path
        if path is None:
            if key == "seq":
                problems.append(
                    'needs seq = "dotted.path": where a delivery holds its publication number'
                )
            continue
        if (p := path_problem(path, f"{key} (a dotted path)")) is not None:
            problems.append(p)
            paths[key] = None
    topics: list[Renderer] = []
    raw_topics = raw.get("topics", [])
    if not isinstance(raw_topics, list) or not all(isinstance(t, str) for t in raw_topics):
        problems.append(
            f"topics takes a list of topic names (templates), got {describe(raw_topics)}"
        )
    elif len(raw_topics) > MAX_TOPICS:
        problems.append(f"topics: {len(raw_topics):,} topics, at most {MAX_TOPICS:,}")
    else:
        seen: set[str] = set()
        for i, source in enumerate(raw_topics, 1):
            template, topic_problems = _topic(source, f"topics[{i}]")
            problems += topic_problems
            if template is None:
                continue
            if template.constant:
                if source in seen:
                    problems.append(f"topics[{i}]: {source!r} is listed twice")
                seen.add(source)
            names |= template.names
            topics.append(template)
        if paths.get("topic") is None and "topic" not in raw and len(raw_topics) > 1:
            problems.append(
                'topics: several topics need topic = "dotted.path" (where a delivery says '
                "which topic it belongs to)"
            )
    source = raw.get("source", "wsload")
    if source not in SOURCES:
        hint = did_you_mean(source, SOURCES) if isinstance(source, str) else ""
        problems.append(f'source must be "wsload" or "server", got {describe(source)}{hint}')
    if known is not None:
        for line in unknown_variable_problems(names, known):
            var = line.split("{", 1)[1].split("}", 1)[0]
            if var in later:
                line = (
                    f"{{{var}}} is captured in [[loop]]: the topics and match may use the "
                    "feeder's columns and what [[steps]] capture"
                )
            problems.append(line)
    if problems:
        return None, problems
    deliveries = Deliveries(
        seq=str(paths["seq"]),
        match=matcher,
        topic=paths["topic"],
        sent_at=paths["sent_at"],
        topics=tuple(topics),
        source=str(source),
    )
    return deliveries, []


def _topic(source: Any, what: str) -> tuple[TextTemplate | None, list[str]]:
    """A topic template (non-empty text, bounded), or why not."""
    if not isinstance(source, str) or not source.strip():
        return None, [f"{what}: a topic is a non-empty text, got {describe(source)}"]
    if len(source) > MAX_TOPIC_LENGTH:
        return None, [f"{what}: {len(source)} characters, at most {MAX_TOPIC_LENGTH}"]
    template = TextTemplate(source)
    if template.problems:
        return None, [f"{what}: {p}" for p in template.problems]
    return template, []


def parse_publish(
    raw: Any, action: str, feeder_columns: Collection[str] | None
) -> tuple[Publish | None, list[str], set[str]]:
    """``publish = {topic = "...", seq = "{seq}"}`` of a step: the value, problems, variables."""
    if action not in ("send", "post"):
        return None, [f"publish applies to send and post steps only, not to {action}"], set()
    if not isinstance(raw, dict):
        return (
            None,
            [f'publish takes {{topic = "...", seq = "{{seq}}"}}, got {describe(raw)}'],
            set(),
        )
    if (shape := value_shape_problem(raw)) is not None:
        return None, [f"publish value is {shape}"], set()
    problems = [f"publish: {p}" for p in unknown_keys(raw, PUBLISH_KEYS)]
    names: set[str] = set()
    topic: TextTemplate | None = None
    if "topic" not in raw:
        problems.append('publish: needs topic = "..." (the topic it publishes to)')
    else:
        topic, topic_problems = _topic(raw["topic"], "publish: topic")
        problems += topic_problems
        if topic is not None:
            names |= topic.names
    seq: ValueTemplate | None = None
    if "seq" not in raw:
        problems.append('publish: needs seq = "{seq}" (the publication number, an integer)')
    else:
        seq, seq_problem, seq_names = _seq(raw["seq"], feeder_columns)
        if seq_problem:
            problems.append(f"publish: seq {seq_problem}")
        names |= seq_names
    if problems or topic is None or seq is None:
        return None, problems, names
    return Publish(topic=topic, seq=seq), [], names


def _seq(
    raw: Any, feeder_columns: Collection[str] | None
) -> tuple[ValueTemplate | None, str, set[str]]:
    """A publication number's template, or why it cannot render to an integer."""
    need = 'must render to an integer: an integer, or exactly one placeholder like "{seq}"'
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 0 <= raw < 2**63:
            return None, f"{raw} is out of range (0 to 2**63-1)", set()
        return ValueTemplate(raw), "", set()
    if not isinstance(raw, str):
        return None, f"{need}, got {describe(raw)}", set()
    if raw.strip().isdigit():  # seq = "7": the integer 7
        return _seq(int(raw), feeder_columns)
    template = ValueTemplate(raw)
    if template.problems:
        return None, "; ".join(template.problems), set()
    tree = template.tree
    if getattr(tree, "kind", None) != "slot" or not raw.startswith("{"):
        return None, f"{need} (got {raw!r})", set(template.names)
    name = raw[1:-1].split("(", 1)[0].strip()
    if name == "uuid":
        return None, f"{need}: {{uuid}} is text", set()
    if name in _NOT_INTEGERS:
        return None, f"{need}: {{{name}}} is {_NOT_INTEGERS[name]}", set()
    if feeder_columns and name in feeder_columns:
        return None, f"{need}: {{{name}}} is a feeder column, a text", set()
    if name == "random_int" and int(raw[1:-1].split("(", 1)[1].split(",", 1)[0]) < 0:
        return None, f"{raw}: a publication number is 0 or more", set()
    return template, "", set(template.names)


def parse_post(raw: Any) -> tuple[HttpPost | None, list[str], set[str]]:
    """``post = {url = "/api/publish", body = ..., method = "POST"}``, or the url alone."""
    if isinstance(raw, str):
        raw = {"url": raw}
    if not isinstance(raw, dict):
        return (
            None,
            [
                'post takes a url ("/api/publish") or a table {url, body, method}, '
                f"got {describe(raw)}"
            ],
            set(),
        )
    problems = [f"post: {p}" for p in unknown_keys(raw, POST_KEYS)]
    names: set[str] = set()
    url: TextTemplate | None = None
    if "url" not in raw:
        problems.append('post: needs url = "/path" (on the api_url\'s host) or "http(s)://..."')
    elif not isinstance(raw["url"], str) or not raw["url"]:
        problems.append(f"post: url must be a non-empty text, got {describe(raw['url'])}")
    else:
        url = TextTemplate(raw["url"])
        problems += [f"post: url: {p}" for p in url.problems]
        problems += _url_problems(raw["url"], url)
        names |= url.names
    method = raw.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        hint = did_you_mean(method.upper(), METHODS) if isinstance(method, str) else ""
        problems.append(
            f"post: method must be one of {', '.join(METHODS)}, got {describe(method)}{hint}"
        )
    else:
        method = method.upper()
    body: Renderer | None = None
    if "body" in raw:
        value = raw["body"]
        if not isinstance(value, str | dict):
            problems.append(
                f"post: body takes a text or a table (sent as JSON), got {describe(value)}"
            )
        elif method == "GET":
            problems.append("post: a GET request has no body (leave body out, or use POST)")
        else:
            # a table renders as a JSON value (sent as application/json), a text as text
            template = TextTemplate(value) if isinstance(value, str) else ValueTemplate(value)
            problems += [f"post: body: {p}" for p in template.problems]
            names |= template.names
            body = template
    if problems or url is None:
        return None, problems, names
    return HttpPost(url=url, body=body, method=str(method)), [], names


def _url_problems(source: str, template: TextTemplate) -> list[str]:
    """What can be known of a URL template before the run: its literal text checked."""
    literal = source if template.constant else source.split("{", 1)[0]
    shown = display_url(source) if template.constant else source
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in source):
        return [f"post: url {shown!r} contains whitespace or a control character"]
    if "#" in source:
        return [f"post: url {shown!r} has a fragment: a fragment is never sent to a server"]
    if literal.startswith("/"):
        return []  # a path on the api_url's host
    lowered = literal.lower()
    if "://" not in literal:
        if template.constant or not literal:
            if not literal:
                return []  # the url starts with a placeholder: checked when it renders
            return [
                f"post: url {shown!r} must start with / (a path on the api_url's host) "
                "or http:// or https://"
            ]
        if not any(s.startswith(lowered) or lowered.startswith(s) for s in ("http://", "https://")):
            return [f"post: url {shown!r} must start with /, http:// or https://"]
        return []
    if not lowered.startswith(("http://", "https://")):
        scheme = literal.split("://", 1)[0]
        return [f"post: url {shown!r} must be http:// or https:// (got {scheme}://)"]
    if template.constant:
        try:
            parts = urlsplit(source)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            return [f"post: url {shown!r} is not a valid URL ({exc})"]
        if not parts.hostname:
            return [f"post: url {shown!r} has no host"]
    return []


__all__ = [
    "DELIVERIES_KEYS",
    "MAX_TOPICS",
    "METHODS",
    "POST_KEYS",
    "PUBLISH_KEYS",
    "SOURCES",
    "parse_deliveries",
    "parse_post",
    "parse_publish",
]
