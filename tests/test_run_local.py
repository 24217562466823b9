"""The local launcher's decisions, without starting anything."""

from __future__ import annotations

import stat

import pytest

from app.config import load_config
from scripts import run_local
from scripts.run_local import Backend, LaunchError, choose_backend


@pytest.mark.parametrize(
    ("endpoint", "preference", "docker_ok", "jar_missing", "expected"),
    [
        ("http://127.0.0.1:9000", "auto", True, None, "external"),
        ("http://127.0.0.1:9000", "docker", True, "no java", "external"),
        (None, "auto", True, None, "jar"),
        (None, "auto", False, None, "jar"),
        (None, "jar", True, None, "jar"),
        (None, "docker", True, None, "docker"),
        (None, "docker", False, None, "jar"),
        (None, "auto", True, "no java", "docker"),
    ],
)
def test_choose_backend(endpoint, preference, docker_ok, jar_missing, expected):
    backend = choose_backend(endpoint, preference, docker_ok=docker_ok, jar_missing=jar_missing)
    assert backend.kind == expected
    assert backend.endpoint_url == (endpoint if expected == "external" else None)


@pytest.mark.parametrize(("preference", "docker_ok"), [("auto", False), ("jar", True), ("docker", False)])
def test_choose_backend_names_what_to_install(preference, docker_ok):
    missing = "Java is not installed: DynamoDB Local needs Java 17 or newer"
    with pytest.raises(LaunchError, match="Java"):
        choose_backend(None, preference, docker_ok=docker_ok, jar_missing=missing)


def test_choose_backend_rejects_unknown_preference():
    with pytest.raises(LaunchError, match="auto, jar or docker"):
        choose_backend(None, "podman", docker_ok=True, jar_missing=None)


def test_jar_problem_names_java_then_node(monkeypatch, tmp_path):
    monkeypatch.setattr(run_local.shutil, "which", lambda name: None)
    assert "Java 17" in run_local.jar_problem(tmp_path)
    monkeypatch.setattr(run_local.shutil, "which", lambda name: "/usr/bin/java" if name == "java" else None)
    assert "Node.js 20" in run_local.jar_problem(tmp_path)
    monkeypatch.setattr(run_local.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert "npm ci" in run_local.jar_problem(tmp_path)


def test_jar_problem_is_none_in_this_checkout():
    assert run_local.jar_problem() is None


def test_dev_env_written_once_with_a_private_token(tmp_path):
    path = run_local.ensure_dev_env(tmp_path)
    assert path == tmp_path / ".local" / "dev.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = load_config(environ={}, dotenv_path=run_local.dotenv_file(tmp_path))
    assert len(config["TWILIO_AUTH_TOKEN"]) == 32
    assert config["TWILIO_VALIDATE_SIGNATURE"] is True
    # A second run keeps the token, so a running sms.py still signs correctly.
    assert run_local.ensure_dev_env(tmp_path) is None
    again = load_config(environ={}, dotenv_path=run_local.dotenv_file(tmp_path))
    assert again["TWILIO_AUTH_TOKEN"] == config["TWILIO_AUTH_TOKEN"]


def test_user_env_file_wins_and_no_dev_file_is_written(tmp_path):
    (tmp_path / ".env").write_text("TWILIO_AUTH_TOKEN=mine\n")
    assert run_local.ensure_dev_env(tmp_path) is None
    assert not (tmp_path / ".local").exists()
    assert run_local.dotenv_file(tmp_path) == tmp_path / ".env"


def test_child_environment_layers_and_local_credentials():
    env = run_local.child_environment(
        {"PATH": "/bin", "TWILIO_AUTH_TOKEN": "from-env"},
        {"TWILIO_AUTH_TOKEN": "from-file", "LOG_LEVEL": "DEBUG"},
        "http://127.0.0.1:8123",
        local=True,
    )
    assert env["TWILIO_AUTH_TOKEN"] == "from-env"
    assert env["LOG_LEVEL"] == "DEBUG"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8123"
    assert env["AWS_ACCESS_KEY_ID"] == "local"
    remote = run_local.child_environment({"AWS_PROFILE": "prod"}, {}, None, local=False)
    assert "AWS_ACCESS_KEY_ID" not in remote
    assert "AWS_ENDPOINT_URL" not in remote


def test_make_run_turns_the_dev_phone_on_unless_the_settings_say_otherwise():
    assert run_local.child_environment({}, {}, None, local=True)["DEV_PHONE_ENABLED"] == "true"
    off = run_local.child_environment({}, {"DEV_PHONE_ENABLED": "false"}, None, local=True)
    assert off["DEV_PHONE_ENABLED"] == "false"
    assert "http://127.0.0.1:5000/dev-phone/" in run_local.next_steps("http://127.0.0.1:5000/sms")


def test_gunicorn_serves_the_factory_on_loopback():
    command = run_local.gunicorn_command("/venv/bin/python", "127.0.0.1", 5123, workers=3)
    assert command[:3] == ["/venv/bin/python", "-m", "gunicorn"]
    assert command[command.index("--bind") + 1] == "127.0.0.1:5123"
    assert command[command.index("--workers") + 1] == "3"
    assert command[command.index("-c") + 1].endswith("gunicorn.conf.py")
    assert command[-1] == "wsgi:app"


def test_docker_command_keeps_data_on_disk(tmp_path):
    command = run_local.docker_command(8111, tmp_path)
    assert "127.0.0.1:8111:8000" in command
    assert f"{tmp_path.resolve()}:/home/dynamodblocal/data" in command
    assert command[command.index("-dbPath") + 1] == "./data"
    assert "-sharedDb" in command


def test_backend_is_a_value():
    assert Backend("jar") == Backend("jar")
    assert "sms.py" in run_local.next_steps("http://127.0.0.1:5000/sms")


def test_create_table_script_is_idempotent():
    from moto import mock_aws

    from scripts.create_table import create_table

    config = load_config({"TWILIO_VALIDATE_SIGNATURE": False, "DYNAMODB_TABLE_NAME": "t-create-script"},
                         environ={}, dotenv_path=None)
    with mock_aws():
        assert create_table(config, environ={"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"})
        assert create_table(config) is False


def test_make_run_opens_the_console_with_a_token_of_its_own_unless_one_is_set():
    generated = run_local.child_environment({}, {}, None, local=True)["ADMIN_API_TOKEN"]
    again = run_local.child_environment({}, {}, None, local=True)["ADMIN_API_TOKEN"]
    assert generated.startswith("local-") and len(generated) > 20 and generated != again
    steps = run_local.next_steps("http://127.0.0.1:5000/sms", generated)
    assert "http://127.0.0.1:5000/console/" in steps and generated in steps
    mine = run_local.child_environment({}, {"ADMIN_API_TOKEN": "my-own-secret"}, None, local=True)
    assert mine["ADMIN_API_TOKEN"] == "my-own-secret"
    assert "my-own-secret" not in run_local.next_steps("http://127.0.0.1:5000/sms", "my-own-secret")
