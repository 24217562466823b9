"""Heroku: app.json follows the documented schema, and buildpack detection picks Python.

What can be proven without a Heroku account: the manifest uses only the fields Heroku
documents (https://devcenter.heroku.com/articles/app-json-schema), every config var it
asks for is one the app reads, and no file that git pushes to the root would make an
earlier buildpack in Heroku's default detection order claim the app first.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from app.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent

# Top-level keys and their nested keys as the app.json schema documents them.
APP_JSON_FIELDS = {"name", "description", "keywords", "website", "repository", "logo", "success_url",
                   "scripts", "env", "formation", "image", "addons", "buildpacks", "environments", "stack"}
ENV_FIELDS = {"description", "value", "required", "generator"}
FORMATION_FIELDS = {"quantity", "size"}
BUILDPACK_FIELDS = {"url"}

# Heroku's officially supported buildpacks in the order detection tries them
# (https://devcenter.heroku.com/articles/buildpacks), each with the root files its
# bin/detect looks for. The first match builds the app.
DETECTION_ORDER: list[tuple[str, set[str]]] = [
    ("ruby", {"Gemfile"}),
    ("nodejs", {"package.json"}),
    ("clojure", {"project.clj", "build.boot"}),
    ("python", {"requirements.txt", "setup.py", "Pipfile", "poetry.lock", "uv.lock"}),
    ("java", {"pom.xml", "pom.atom", "pom.clj", "pom.groovy", "pom.rb", "pom.scala", "pom.yaml", "pom.yml"}),
    ("gradle", {"build.gradle", "build.gradle.kts", "settings.gradle", "settings.gradle.kts", "gradlew"}),
    ("scala", {"build.sbt"}),
    ("php", {"composer.json", "index.php"}),
    ("go", {"go.mod", "Gopkg.lock", "glide.yaml"}),
]

# boto3's and gunicorn's own variables: read by those libraries, not by app/config.py.
LIBRARY_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "WEB_CONCURRENCY"}


def load_manifest() -> dict:
    return json.loads((ROOT / "app.json").read_text())


def pushed_root_files() -> set[str]:
    """Return the names at the repository root that `git push heroku main` sends."""
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {line.split("/", 1)[0] for line in out.splitlines() if line}


def detect(files: set[str]) -> str | None:
    """Return the buildpack Heroku's default detection would pick for these root files."""
    for name, markers in DETECTION_ORDER:
        if files & markers:
            return name
    return None


def test_app_json_uses_only_documented_fields():
    manifest = load_manifest()
    assert set(manifest) <= APP_JSON_FIELDS, set(manifest) - APP_JSON_FIELDS
    for name, spec in manifest["env"].items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), name
        assert isinstance(spec, dict) and set(spec) <= ENV_FIELDS, (name, spec)
        assert spec.get("description"), f"{name} has no description"
        if "generator" in spec:
            assert spec["generator"] == "secret", name  # the only generator Heroku documents
        if "value" in spec:
            assert isinstance(spec["value"], str), name
    for process, spec in manifest["formation"].items():
        assert set(spec) <= FORMATION_FIELDS, (process, spec)
        assert isinstance(spec.get("quantity", 1), int)
    for buildpack in manifest["buildpacks"]:
        assert set(buildpack) <= BUILDPACK_FIELDS, buildpack


def test_app_json_builds_python_and_runs_the_procfile_web_process():
    manifest = load_manifest()
    assert [b["url"] for b in manifest["buildpacks"]] == ["heroku/python"]
    procfile = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
    assert set(manifest["formation"]) == set(procfile) == {"web"}


def test_app_json_asks_for_what_the_app_needs_and_generates_the_operator_token():
    env = load_manifest()["env"]
    known = {setting.name for setting in SETTINGS} | LIBRARY_VARIABLES
    assert set(env) <= known, set(env) - known
    assert env["TWILIO_AUTH_TOKEN"]["required"] is True
    assert env["ADMIN_API_TOKEN"] == {**env["ADMIN_API_TOKEN"], "generator": "secret"}
    assert "value" not in env["ADMIN_API_TOKEN"]
    secrets = {setting.name for setting in SETTINGS if setting.secret}
    for name in secrets & set(env):
        assert "value" not in env[name], f"{name} is a secret: no default value in app.json"
    # Heroku's router ends TLS: without one trusted hop every Twilio signature fails.
    assert env["TRUST_PROXY_HOPS"]["value"] == "1"
    assert env["DYNAMODB_AUTO_CREATE"]["value"] == "false"


def test_heroku_detection_picks_python_from_the_pushed_files():
    files = pushed_root_files()
    assert "app.json" in files and "requirements.txt" in files
    assert detect(files) == "python", files & set().union(*(m for _, m in DETECTION_ORDER))
    others = {name for name, markers in DETECTION_ORDER if name != "python" and files & markers}
    assert not others, f"root files another buildpack detects: {others}"


def test_detection_would_pick_node_with_a_root_package_json():
    # The defect this guards against: a root package.json wins before Python.
    assert detect(pushed_root_files() | {"package.json"}) == "nodejs"


def test_python_version_is_pinned_the_way_the_buildpack_reads_it():
    files = pushed_root_files()
    # runtime.txt is deprecated and would take precedence over .python-version.
    assert "runtime.txt" not in files and ".python-version" in files
    version = (ROOT / ".python-version").read_text().strip()
    # The major-version form gets the latest patch release, with its security fixes.
    assert re.fullmatch(r"3\.\d+", version), version
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert required == f">={version}"
