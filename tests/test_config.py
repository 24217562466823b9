"""Configuration: one place reads it, validates it, and names what is wrong."""

from __future__ import annotations

import dataclasses

import pytest

from app import create_app
from app.config import SETTINGS, ConfigError, Settings, load_config, rest_configured


def test_missing_auth_token_fails_at_start_up_naming_it():
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        create_app({})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT_PER_DAY", "abc"),
        ("TWILIO_VALIDATE_SIGNATURE", "maybe"),
        ("REPLY_DEADLINE_SECONDS", "20"),
        ("REPLY_MAX_CHARS", "5000"),
        ("DYNAMODB_READ_TIMEOUT", "0"),
        ("HISTORY_MAX_MESSAGES", "-1"),
        ("PERSONA_FILE", "/nonexistent/persona.txt"),
        ("GUNICORN_THREADS", "0"),
    ],
)
def test_malformed_values_are_named(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config(environ={"TWILIO_AUTH_TOKEN": "t", name: value}, dotenv_path=None)


def test_file_then_environment_then_overrides(tmp_path):
    dotenv = tmp_path / "settings.env"
    dotenv.write_text("TWILIO_AUTH_TOKEN=from-file\nOPENAI_MODEL=file-model\nRATE_LIMIT_PER_DAY=5\n")
    config = load_config(
        {"RATE_LIMIT_PER_DAY": 9},
        environ={"OPENAI_MODEL": "env-model", "DOTENV_FILE": str(dotenv)},
    )
    assert config.twilio_auth_token == "from-file"
    assert config.openai_model == "env-model"
    assert config.rate_limit_per_day == 9


def test_empty_settings_file_name_reads_no_file(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("TWILIO_AUTH_TOKEN=should-not-be-read\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={"TWILIO_VALIDATE_SIGNATURE": "false", "DOTENV_FILE": ""}
                       ).twilio_auth_token is None
    assert load_config(environ={"TWILIO_VALIDATE_SIGNATURE": "false"}
                       ).twilio_auth_token == "should-not-be-read"


def test_defaults_and_types():
    config = load_config(environ={"TWILIO_AUTH_TOKEN": "t", "OPENAI_FALLBACK_MODELS": "a, b,,c"},
                         dotenv_path=None)
    assert config.openai_fallback_models == ("a", "b", "c")
    assert config.twilio_validate_signature is True
    assert config.dynamodb_table_name == "DadaCatConversations"
    assert config.reply_deadline_seconds == 10.0
    assert set(config.env()) == {setting.name for setting in SETTINGS}


def test_settings_are_one_frozen_typed_object_with_an_attribute_per_row():
    config = load_config(environ={"TWILIO_AUTH_TOKEN": "t"}, dotenv_path=None)
    assert [field.name for field in dataclasses.fields(Settings)] == [s.name.lower() for s in SETTINGS]
    # REPLY_MODE's empty default is resolved (sync without Messages API credentials).
    defaults = [s for s in SETTINGS if s.name not in ("TWILIO_AUTH_TOKEN", "REPLY_MODE")]
    assert [s.name for s in defaults if getattr(config, s.name.lower()) != s.default] == []
    assert config.reply_mode == "sync"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.reply_max_chars = 10  # type: ignore[misc]


@pytest.mark.parametrize(
    "name", ["STORAGE", "MANAGER", "RESPONDER", "OFFLINE_RESPONDER", "MEMORY_KEEPER", "LIMITS", "SENDER"])
def test_collaborators_are_not_settings(name):
    with pytest.raises(ConfigError, match=f"pass {name.lower()}= to create_app"):
        load_config({"TWILIO_AUTH_TOKEN": "t", name: object()}, environ={}, dotenv_path=None)


def test_an_unknown_override_is_refused_not_carried():
    with pytest.raises(ConfigError, match="REPLY_MAX_CHARZ is not a setting"):
        load_config({"TWILIO_AUTH_TOKEN": "t", "REPLY_MAX_CHARZ": 5}, environ={}, dotenv_path=None)


def test_secrets_are_marked():
    secrets = {setting.name for setting in SETTINGS if setting.secret}
    assert secrets == {"TWILIO_AUTH_TOKEN", "TWILIO_API_KEY_SECRET", "OPENAI_API_KEY", "ADMIN_API_TOKEN",
                       "METRICS_TOKEN"}


SID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"TWILIO_ACCOUNT_SID": "AC123"}, "TWILIO_ACCOUNT_SID"),
        ({"TWILIO_ACCOUNT_SID": "SK" + SID}, "TWILIO_ACCOUNT_SID"),
        ({"TWILIO_ACCOUNT_SID": "AC" + SID, "TWILIO_API_KEY_SID": "AC" + SID,
          "TWILIO_API_KEY_SECRET": "s"}, "TWILIO_API_KEY_SID"),
        ({"TWILIO_ACCOUNT_SID": "AC" + SID, "TWILIO_MESSAGING_SERVICE_SID": "MG" + SID[:-1] + "z"},
         "TWILIO_MESSAGING_SERVICE_SID"),
        ({"TWILIO_ACCOUNT_SID": "AC" + SID, "TWILIO_API_KEY_SID": "SK" + SID}, "TWILIO_API_KEY_SECRET"),
        ({"TWILIO_API_KEY_SID": "SK" + SID, "TWILIO_API_KEY_SECRET": "s"}, "needs TWILIO_ACCOUNT_SID"),
        ({"TWILIO_MESSAGING_SERVICE_SID": "MG" + SID}, "needs TWILIO_ACCOUNT_SID"),
        ({"TWILIO_ACCOUNT_SID": "AC" + SID, "TWILIO_API_BASE_URL": "ftp://example.com"},
         "TWILIO_API_BASE_URL"),
        ({"TWILIO_ACCOUNT_SID": "AC" + SID, "TWILIO_API_BASE_URL": "127.0.0.1:5000"}, "TWILIO_API_BASE_URL"),
    ],
)
def test_messages_api_settings_are_checked(settings, named):
    with pytest.raises(ConfigError, match=named):
        load_config(environ={"TWILIO_AUTH_TOKEN": "t", **settings}, dotenv_path=None)


def test_account_sid_without_any_secret_is_refused():
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID needs a secret"):
        load_config(environ={"TWILIO_VALIDATE_SIGNATURE": "false", "TWILIO_ACCOUNT_SID": "AC" + SID},
                    dotenv_path=None)


@pytest.mark.parametrize(
    ("settings", "configured"),
    [
        ({}, False),
        ({"TWILIO_ACCOUNT_SID": "AC" + SID}, True),
        ({"TWILIO_ACCOUNT_SID": "AC" + SID.upper(), "TWILIO_API_KEY_SID": "SK" + SID,
          "TWILIO_API_KEY_SECRET": "s", "TWILIO_MESSAGING_SERVICE_SID": "MG" + SID,
          "TWILIO_API_BASE_URL": "http://127.0.0.1:5099/"}, True),
    ],
)
def test_complete_messages_api_settings_load(settings, configured):
    config = load_config(environ={"TWILIO_AUTH_TOKEN": "t", **settings}, dotenv_path=None)
    assert rest_configured(config) is configured
