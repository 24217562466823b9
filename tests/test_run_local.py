"""The local launcher's decisions, without starting anything."""

from __future__ import annotations

import json
import stat
import uuid

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
    assert len(config.twilio_auth_token) == 32
    assert config.twilio_validate_signature is True
    # A second run keeps the token, so a running sms.py still signs correctly.
    assert run_local.ensure_dev_env(tmp_path) is None
    again = load_config(environ={}, dotenv_path=run_local.dotenv_file(tmp_path))
    assert again.twilio_auth_token == config.twilio_auth_token


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


def _send_through(env):
    from app.twilio_rest import build_sender

    sender = build_sender(load_config(environ=env, dotenv_path=None))
    assert sender is not None
    return sender.send(to="+15555550142", from_="+15555550100", body="later, cat", status_callback=None)


def test_make_run_points_the_bots_replies_sent_later_at_a_local_messages_api(tmp_path):
    env = {"TWILIO_AUTH_TOKEN": "dev-token"}
    fake = run_local.start_messages_api(env, 5123, tmp_path)
    try:
        assert env["TWILIO_API_BASE_URL"] == fake.base_url
        assert env["TWILIO_ACCOUNT_SID"] == run_local.LOCAL_ACCOUNT_SID == fake.account_sid
        sent = _send_through(env)
        assert fake.sent_to("+15555550142") == ["later, cat"] and sent.sid.startswith("SM")
        # scripts/sms.py finds it from the bot's port; the file holds the token, so it is private.
        path = run_local.messages_api_file(5123, tmp_path)
        assert path == tmp_path / ".local" / "messages-api-5123.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text()) == {"base_url": fake.base_url, "account_sid": fake.account_sid,
                                                "auth_token": "dev-token"}
        assert fake.base_url in run_local.next_steps("http://127.0.0.1:5123/sms", None, fake.base_url)
    finally:
        fake.close()


def test_the_local_messages_api_takes_the_developers_own_credentials(tmp_path):
    account, key = "AC" + "7" * 32, "SK" + "8" * 32
    env = {"TWILIO_VALIDATE_SIGNATURE": "false", "TWILIO_ACCOUNT_SID": account,
           "TWILIO_API_KEY_SID": key, "TWILIO_API_KEY_SECRET": "key-secret"}
    fake = run_local.start_messages_api(env, 5124, tmp_path)
    try:
        # With no auth token, one is made up for the local API (it signs delivery callbacks).
        assert len(env["TWILIO_AUTH_TOKEN"]) == 32 and env["TWILIO_ACCOUNT_SID"] == account
        _send_through(env)
        (call,) = fake.calls
        assert call.username == key and call.path.startswith(f"/2010-04-01/Accounts/{account}/")
    finally:
        fake.close()


def test_an_endpoint_of_the_developers_own_is_kept(tmp_path):
    env = {"TWILIO_AUTH_TOKEN": "t", "TWILIO_API_BASE_URL": "http://127.0.0.1:7777"}
    assert run_local.start_messages_api(env, 5125, tmp_path) is None
    assert env == {"TWILIO_AUTH_TOKEN": "t", "TWILIO_API_BASE_URL": "http://127.0.0.1:7777"}
    assert not run_local.messages_api_file(5125, tmp_path).exists()
    assert "Messages API" not in run_local.next_steps("http://127.0.0.1:5125/sms")


def test_create_table_for_a_local_endpoint_needs_no_region(monkeypatch, ddb_local):
    # make run on a machine with no AWS region anywhere (the test run itself sets AWS_DEFAULT_REGION).
    from scripts.create_table import create_table

    monkeypatch.delenv("AWS_DEFAULT_REGION")
    name = f"t-no-region-{uuid.uuid4().hex[:8]}"
    config = load_config({"TWILIO_VALIDATE_SIGNATURE": False, "DYNAMODB_TABLE_NAME": name,
                          "AWS_ENDPOINT_URL": ddb_local.endpoint_url}, environ={}, dotenv_path=None)
    local = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    assert create_table(config, environ=local)
    assert create_table(config, environ=local) is False


@pytest.mark.parametrize("mode", ["auto", "async"])
def test_make_run_accepts_a_reply_mode_that_needs_the_local_messages_api(mode):
    """The account the local Messages API provides counts when the settings are checked first."""
    dotenv = {"TWILIO_AUTH_TOKEN": "a" * 32, "REPLY_MODE": mode}
    with pytest.raises(Exception, match="TWILIO_ACCOUNT_SID"):
        load_config(dotenv_path=None, environ=dotenv)  # what make run used to check, and refuse
    settings = load_config(dotenv_path=None, environ=run_local.checked_environment({}, dotenv))
    assert settings.reply_mode == mode
    own = run_local.checked_environment({"TWILIO_ACCOUNT_SID": "AC" + "1" * 32}, dotenv)
    assert own["TWILIO_ACCOUNT_SID"] == "AC" + "1" * 32  # a developer's own account is kept
    elsewhere = {**dotenv, "TWILIO_API_BASE_URL": "http://127.0.0.1:9"}
    assert "TWILIO_ACCOUNT_SID" not in run_local.checked_environment({}, elsewhere)  # not ours to fill
