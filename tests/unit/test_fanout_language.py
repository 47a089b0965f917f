"""The fan-out parts of the step language: ``[deliveries]``, ``publish`` and ``post`` compile
into the typed values of common.program, and bad ones give every problem at once, located."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.common.errors import SpecError
from wsload.common.fanout_language import DELIVERIES_KEYS, POST_KEYS, PUBLISH_KEYS
from wsload.common.fields import Mode
from wsload.common.match import SubsetMatcher, TextMatcher
from wsload.common.program import Action, Deliveries, HttpPost, Publish
from wsload.common.spec import JobSpec, build_spec, spec_from_dict
from wsload.common.steps import ScenarioError, compile_workload, step_label, workload_problems
from wsload.common.template import TextTemplate, ValueTemplate

RNG = random.Random(0)

FANOUT = """\
num_clients = 4
[feeder]
file = "rooms.csv"
mode = "cycle"

[[scenarios]]
name = "subscriber"
clients = 3
[[scenarios.steps]]
send = {type = "subscribe", topic = "news-{room}"}
[[scenarios.steps]]
expect = {type = "subscribed"}
capture = {sub = "id"}
[[scenarios.loop]]
think = 60
[scenarios.deliveries]
match = {type = "delivery"}
topic = "topic"
seq = "data.seq"
sent_at = "sent_at"
topics = ["news-{room}", "all-{sub}"]

[[scenarios]]
name = "publisher"
clients = 1
rate = 10
[[scenarios.loop]]
send = {type = "publish", topic = "news", seq = "{seq}", sent_at = "{ts}"}
publish = {topic = "news-{room}", seq = "{seq}"}
[[scenarios.loop]]
post = {url = "/api/publish", body = {topic = "news", seq = "{seq}"}, method = "put"}
publish = {topic = "all", seq = "{seq}"}
timeout = 2
[[scenarios.loop]]
post = "https://127.0.0.1:8443/api/publish?topic={room}"
"""


def write(tmp_path: Path, text: str, name: str = "fanout.toml") -> Path:
    (tmp_path / "rooms.csv").write_text("room\nr1\nr2\n")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_fanout_scenario_compiles_to_deliveries_publications_and_posts(tmp_path: Path) -> None:
    spec = build_spec(scenario=write(tmp_path, FANOUT), env={}, ws_url="ws://127.0.0.1:9/")
    subscriber, publisher = compile_workload(spec).programs
    deliveries = subscriber.deliveries
    assert isinstance(deliveries, Deliveries)
    assert (deliveries.topic, deliveries.seq, deliveries.sent_at, deliveries.source) == (
        "topic",
        "data.seq",
        "sent_at",
        "wsload",
    )
    assert isinstance(deliveries.match, SubsetMatcher)
    assert deliveries.match.match(b'{"type":"delivery","data":{"seq":1}}', True, {}, RNG)
    assert deliveries.match.match(b'{"type":"ack"}', True, {}, RNG) is None
    values = {"room": "r1", "sub": 7}
    assert [t.render(values, RNG) for t in deliveries.topics] == ["news-r1", "all-7"]
    assert publisher.deliveries is None

    send, post, bare = publisher.loop
    assert send.action is Action.SEND
    assert isinstance(send.publish, Publish)
    assert send.publish.topic.render({"room": "r2"}, RNG) == "news-r2"
    assert send.publish.seq.render({"seq": 41}, RNG) == 41  # the integer, not its text

    assert post.action is Action.POST
    assert isinstance(post.body, HttpPost)
    assert post.body.method == "PUT"
    assert post.timeout == 2.0
    assert post.body.url.render({}, RNG) == "/api/publish"
    assert isinstance(post.body.body, ValueTemplate)  # the worker sends it as JSON
    assert post.body.body.render({"seq": 3}, RNG) == {"topic": "news", "seq": 3}
    assert post.publish is not None
    assert post.publish.topic.render({}, RNG) == "all"

    assert isinstance(bare.body, HttpPost)
    assert (bare.body.method, bare.body.body, bare.publish) == ("POST", None, None)
    text = compile_workload(JobSpec(loop=({"post": {"url": "/p", "body": "n={seq}"}},)))
    text_body = text.programs[0].loop[0].body.body
    assert isinstance(text_body, TextTemplate)
    assert text_body.render({"seq": 4}, RNG) == "n=4"
    assert bare.body.url.render({"room": "r1"}, RNG) == (
        "https://127.0.0.1:8443/api/publish?topic=r1"
    )


def test_a_top_level_deliveries_table_travels_with_the_job(tmp_path: Path) -> None:
    """[deliveries] is a scenario-file field of its own, carried to workers in to_dict."""
    text = """\
[[steps]]
send = {type = "subscribe"}
[[loop]]
think = 60
[deliveries]
seq = "seq"
match = "tick"
source = "server"
"""
    spec = build_spec(scenario=write(tmp_path, text), env={}, ws_url="ws://127.0.0.1:9/")
    assert spec.deliveries == {"seq": "seq", "match": "tick", "source": "server"}
    again = spec_from_dict(spec.to_dict())
    assert again == spec
    (program,) = compile_workload(again).programs
    assert program.deliveries is not None
    assert isinstance(program.deliveries.match, TextMatcher)
    assert (program.deliveries.source, program.deliveries.topics) == ("server", ())


def test_seq_accepts_integers_and_one_integer_placeholder() -> None:
    def seq_of(value: Any) -> Any:
        spec = JobSpec(loop=({"send": "x", "publish": {"topic": "t", "seq": value}},))
        (step,) = compile_workload(spec).programs[0].loop
        assert step.publish is not None
        return step.publish.seq.render({"seq": 5, "n": 9}, random.Random(1))

    assert seq_of("{seq}") == 5
    assert 1 <= seq_of("{random_int(1,3)}") <= 3
    # in [[steps]] a constant seq is fine (once per connection); a captured variable is
    # checked when it renders
    spec = JobSpec(
        steps=(
            {"send": "x", "publish": {"topic": "t", "seq": 7}},
            {"send": "y", "publish": {"topic": "t", "seq": "8"}},
            {"expect": {"a": 1}, "capture": {"n": "n"}},
        ),
        loop=({"send": "z", "publish": {"topic": "t", "seq": "{n}"}},),
    )
    program = compile_workload(spec).programs[0]
    seqs = [s.publish.seq.render({"n": 9}, RNG) for s in program.steps if s.publish]
    assert seqs == [7, 8, 9]


def test_every_problem_of_the_fanout_parts_at_once_with_where_it_is() -> None:
    spec = JobSpec(
        feeder={
            "file": "rooms.csv",
            "mode": "cycle",
            "columns": ["room"],
            "rows": [["r1"]],
            "offset": 0,
            "total": 1,
        },
        steps=(
            {"send": "subscribe", "publsh": {}},
            {"expect": "ok", "publish": {"topic": "t", "seq": "{seq}"}},
        ),
        loop=(
            {"send": "p", "publish": {"topic": "", "sq": 1}},
            {"send": "p", "publish": {"topic": "t", "seq": "{ts}"}},
            {"send": "p", "publish": {"topic": "t", "seq": "m{seq}"}},
            {"send": "p", "publish": {"topic": "t", "seq": 3}},
            {"post": {"url": "ftp://x/y", "methd": "GET"}},
            {"post": {"url": "/p#frag", "method": "DELETE", "body": 3}},
            {"post": {"url": "htps://{host}/x"}},
            {"post": {"url": "/p", "method": "get", "body": "x"}},
            {"send": "p", "publish": {"topic": "t", "seq": "{room}"}},
            {"send": "p", "publish": {"topic": "t", "seq": "{random_int(-3, 5)}"}},
            {"post": "publish"},
            {"expect": {"a": 1}, "capture": {"late": "a"}},
            {"think": 1, "publish": {"topic": "t", "seq": "{seq}"}},
        ),
        deliveries={
            "mtch": {},
            "topics": ["a", "b", "a", "{late}", "{nope}"],
            "source": "servr",
            "sent_at": "a..b",
        },
    )
    assert workload_problems(spec) == [
        "steps: step 1: unknown key 'publsh' (did you mean 'publish'?)",
        "steps: step 2: publish applies to send and post steps only, not to expect",
        "loop: step 1: publish: unknown key 'sq' (did you mean 'seq'?)",
        "loop: step 1: publish: topic: a topic is a non-empty text, got str ''",
        'loop: step 1: publish: needs seq = "{seq}" (the publication number, an integer)',
        "loop: step 2: publish: seq must render to an integer: an integer, or exactly one "
        'placeholder like "{seq}": {ts} is epoch seconds, a float',
        "loop: step 3: publish: seq must render to an integer: an integer, or exactly one "
        "placeholder like \"{seq}\" (got 'm{seq}')",
        "loop: step 5: post: unknown key 'methd' (did you mean 'method'?)",
        "loop: step 5: post: url 'ftp://x/y' must be http:// or https:// (got ftp://)",
        "loop: step 6: post: url '/p#frag' has a fragment: a fragment is never sent to a server",
        "loop: step 6: post: method must be one of POST, PUT, PATCH, GET, got str 'DELETE'",
        "loop: step 6: post: body takes a text or a table (sent as JSON), got int 3",
        "loop: step 7: post: url 'htps://{host}/x' must be http:// or https:// (got htps://)",
        "loop: step 7: unknown variable {host} (known: client_id, pad, room, seq, ts, uuid)",
        "loop: step 8: post: a GET request has no body (leave body out, or use POST)",
        "loop: step 9: publish: seq must render to an integer: an integer, or exactly one "
        'placeholder like "{seq}": {room} is a feeder column, a text',
        "loop: step 10: publish: seq {random_int(-3, 5)}: a publication number is 0 or more",
        "loop: step 11: post: url 'publish' must start with / (a path on the api_url's host) "
        "or http:// or https://",
        "loop: step 13: publish applies to send and post steps only, not to think",
        'loop: step 4: publish: seq is the same number every iteration: use "{seq}" '
        "(one publication per seq)",
        "deliveries: unknown key 'mtch' (did you mean 'match'?)",
        'deliveries: needs seq = "dotted.path": where a delivery holds its publication number',
        "deliveries: sent_at (a dotted path) 'a..b' has an empty part",
        "deliveries: topics[3]: 'a' is listed twice",
        'deliveries: topics: several topics need topic = "dotted.path" (where a delivery '
        "says which topic it belongs to)",
        'deliveries: source must be "wsload" or "server", got str \'servr\' '
        "(did you mean 'server'?)",
        "deliveries: {late} is captured in [[loop]]: the topics and match may use the "
        "feeder's columns and what [[steps]] capture",
        "deliveries: unknown variable {nope} (known: client_id, pad, room, seq, ts, uuid)",
    ]
    with pytest.raises(ScenarioError):
        compile_workload(spec)


def test_a_scenario_locates_its_deliveries_problems() -> None:
    spec = JobSpec(
        num_clients=2,
        scenarios=(
            {"name": "sub", "steps": [{"send": "s"}], "deliveries": {"seq": 3, "topic": ""}},
            {"name": "listen", "deliveries": {"seq": "seq"}},
            {"name": "pub", "loop": [{"send": "p"}], "delivery": {}},
        ),
    )
    assert workload_problems(spec) == [
        "scenarios[2] (listen): needs [[scenarios.steps]] or [[scenarios.loop]] "
        "(a client that only listens: [[scenarios.loop]] think = 60)",
        "scenarios[3] (pub): unknown key 'delivery' (did you mean 'deliveries'?)",
        "scenarios[1] (sub): deliveries: topic (a dotted path) must be a non-empty string "
        "like 'a.b.0.c'",
        "scenarios[1] (sub): deliveries: seq (a dotted path) must be a non-empty string "
        "like 'a.b.0.c'",
        "scenarios[1] (sub): deliveries: a subscriber needs [[scenarios.loop]]: with "
        "[[steps]] alone each iteration is a session that closes once its steps are done, "
        "before anything is delivered (a client that only listens: [[scenarios.loop]] "
        "think = 60)",
    ]


def test_a_top_level_deliveries_table_needs_steps_and_no_scenarios() -> None:
    alone = JobSpec(deliveries={"seq": "seq"})
    assert workload_problems(alone) == [
        "deliveries: needs [[steps]] or [[loop]] (a client that only listens: [[loop]] think = 60)"
    ]
    mixed = JobSpec(scenarios=({"name": "a", "loop": [{"send": "x"}]},), deliveries={"seq": "seq"})
    assert workload_problems(mixed) == [
        "deliveries: a top-level [deliveries] is for the steps of a scenario without "
        "[[scenarios]]; give each scenario its own [scenarios.deliveries]"
    ]


def test_a_misspelt_deliveries_table_in_a_file_says_what_it_is(tmp_path: Path) -> None:
    path = write(tmp_path, '[[loop]]\nsend = "x"\n[delivery]\nseq = "seq"\n')
    with pytest.raises(SpecError) as caught:
        build_spec(scenario=path, env={}, ws_url="ws://127.0.0.1:9/")
    assert caught.value.problems == [
        f"{path}: unknown field 'delivery' (did you mean 'deliveries'?)"
    ]


def test_a_topic_is_either_published_by_wsload_or_a_server_stream() -> None:
    spec = JobSpec(
        num_clients=2,
        scenarios=(
            {
                "name": "ticker",
                "steps": [{"send": "sub"}],
                "loop": [{"think": 60}],
                "deliveries": {
                    "seq": "seq",
                    "topic": "t",
                    "topics": ["prices", "news"],
                    "source": "server",
                },
            },
            {
                "name": "pub",
                "loop": [{"send": "p", "publish": {"topic": "prices", "seq": "{seq}"}}],
            },
        ),
    )
    assert workload_problems(spec) == [
        "scenarios[1] (ticker): deliveries: topic 'prices' is a server stream "
        '(source = "server") and is published by wsload (scenarios[2] (pub): loop: step 1); '
        "a topic is one or the other"
    ]
    wsload_source = spec.scenarios[0] | {
        "deliveries": {"seq": "seq", "topic": "t", "topics": ["prices", "news"]}
    }
    assert (
        workload_problems(JobSpec(num_clients=2, scenarios=(wsload_source, spec.scenarios[1])))
        == []
    )


def test_post_steps_run_under_load_only() -> None:
    spec = JobSpec(mode=Mode.INTEGRATION, steps=({"post": "/publish"},))
    assert workload_problems(spec) == [
        "steps: step 1: post steps run under load only, not in wsload test --integration"
    ]
    assert workload_problems(JobSpec(steps=({"post": "/publish"},))) == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("/publish", None),
        ("http://127.0.0.1:9000/api/publish", None),
        ("{base}/publish", None),  # starts with a placeholder: checked when it renders
        ("https://{host}/publish", None),
        ("HTTP://127.0.0.1/p", None),
        ("ws://127.0.0.1/p", "must be http:// or https:// (got ws://)"),
        ("http://127.0.0.1:99999/p", "is not a valid URL (Port out of range 0-65535)"),
        ("http:///p", "has no host"),
        ("/a b", "contains whitespace or a control character"),
        ("publish/{x}", "must start with /, http:// or https://"),
    ],
)
def test_post_urls_are_checked_as_far_as_they_can_be(url: str, problem: str | None) -> None:
    spec = JobSpec(
        steps=({"expect": {"a": 1}, "capture": {"base": "b", "host": "h", "x": "x"}},),
        loop=({"post": {"url": url}},),
    )
    got = workload_problems(spec)
    assert got == ([] if problem is None else [f"loop: step 1: post: url {url!r} {problem}"])


def test_template_problems_inside_fanout_values_are_located() -> None:
    spec = JobSpec(
        loop=(
            {"post": {"url": "/p/{random_int(3,1)}", "body": {"n": "{nope(1)}"}}},
            {"send": "x", "publish": {"topic": "t{random_int(x,y)}", "seq": "{seq}"}},
        ),
        deliveries={"seq": "seq", "match": {"room": "{rooom}"}, "topics": ["{uuid"]},
    )
    assert workload_problems(spec) == [
        "loop: step 1: post: url: {random_int(3,1)}: random_int(a,b) needs a <= b",
        "loop: step 1: post: body: unknown function 'nope' in {nope(1)} (only random_int(a,b))",
        "loop: step 2: publish: topic: {random_int(x,y)}: random_int takes two integers, "
        "random_int(a,b)",
        "deliveries: unknown variable {rooom} (known: client_id, pad, seq, ts, uuid)",
    ]


def test_the_readme_fanout_example_compiles(tmp_path: Path) -> None:
    """The README's fan-out block is a scenario that compiles as it says."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    section = readme.read_text().split("**Fan-out: subscribers and publishers.**", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    spec = build_spec(scenario=write(tmp_path, block), env={}, ws_url="ws://127.0.0.1:9/")
    (program,) = compile_workload(spec).programs
    assert program.deliveries is not None
    assert program.deliveries.seq == "seq"
    assert [s.action for s in program.loop] == [Action.SEND, Action.POST]
    assert all(s.publish is not None for s in program.loop)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
_keyed = st.dictionaries(
    st.sampled_from([*DELIVERIES_KEYS, *POST_KEYS, *PUBLISH_KEYS, "other"]),
    _json | st.sampled_from(["{seq}", "{ts}", "/p/{seq}", "http://{h}/p", "a.b", "#"]),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(deliveries=_keyed | _json, publish=_keyed | _json, post=_keyed | _json)
def test_any_fanout_value_gives_problems_or_a_program_never_an_exception(
    deliveries: Any, publish: Any, post: Any
) -> None:
    """Hostile values cost a problem line each, never a traceback."""
    spec = JobSpec(
        loop=(
            {"send": "x", "publish": publish},
            {"post": post, "publish": publish},
            {"think": 60},
        ),
        deliveries=deliveries if isinstance(deliveries, dict) else {"seq": deliveries},
    )
    problems = workload_problems(spec)
    assert all(isinstance(p, str) and "\n" not in p for p in problems)
    if not problems:
        assert compile_workload(spec).programs[0].deliveries is not None


def test_a_post_step_is_labelled_by_its_method_and_url() -> None:
    spec = JobSpec(loop=({"post": {"url": "/publish", "method": "patch"}},))
    (step,) = compile_workload(spec).programs[0].loop
    assert step_label(step) == "step 1: post PATCH /publish"


def test_deliveries_must_be_a_table_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'deliveries = "seq"\n[[loop]]\nsend = "x"\n')
    with pytest.raises(SpecError) as caught:
        build_spec(scenario=path, env={}, ws_url="ws://127.0.0.1:9/")
    assert caught.value.problems == [f"{path}: deliveries: expected a table, got str 'seq'"]


def test_deliveries_without_a_topic_path_must_count_under_a_published_topic() -> None:
    def spec(deliveries: dict[str, Any], topic: str = "news") -> JobSpec:
        return JobSpec(
            loop=(
                {"send": "p", "publish": {"topic": topic, "seq": "{seq}"}},
                {"think": 1},
            ),
            deliveries=deliveries,
        )

    assert workload_problems(spec({"seq": "seq"})) == [
        "deliveries: without topic = \"dotted.path\" every delivery counts under 'default', "
        "which no publish step publishes (they publish 'news'): give topic, or topics = [...] "
        "naming the published one"
    ]
    assert workload_problems(spec({"seq": "seq", "topics": ["news"]})) == []
    assert workload_problems(spec({"seq": "seq", "topic": "t"})) == []
    assert workload_problems(spec({"seq": "seq"}, topic="default")) == []
    assert workload_problems(spec({"seq": "seq"}, topic="news-{client_id}")) == []
    assert workload_problems(spec({"seq": "seq", "source": "server"})) == []


def test_a_session_per_iteration_may_not_publish_a_constant_seq_either() -> None:
    churn = JobSpec(steps=({"send": "x", "publish": {"topic": "t", "seq": 1}},))
    assert workload_problems(churn) == [
        'steps: step 1: publish: seq is the same number every iteration: use "{seq}" '
        "(one publication per seq)"
    ]
    once = JobSpec(
        steps=({"send": "x", "publish": {"topic": "t", "seq": 1}},), loop=({"think": 1},)
    )
    assert workload_problems(once) == []  # once per connection
