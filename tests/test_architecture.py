"""The package boundaries issue 13 asks for, checked on the source itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ROOT / "conversation" / "dynamodb" / "keys.py"
# A sort key or partition key of the table's layout, as a literal.
KEY_LITERAL = re.compile(r"^(?:[UCMIN]#|A#|STATS#|CONSOLE#|USER$|LEASE$|GLOBAL$|DAY$|SESSION$)")


def _sources(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def _strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_keys_module_spells_the_key_layout():
    offenders = {
        f"{path.relative_to(ROOT)}: {text!r}"
        for path in _sources("app", "conversation", "scripts")
        if path != KEYS
        for text in _strings(path)
        if KEY_LITERAL.match(text)
    }
    assert not offenders


def test_the_active_pointer_attribute_stays_inside_the_dynamodb_package():
    outside = [
        path.relative_to(ROOT)
        for path in _sources("app", "conversation", "scripts")
        if "dynamodb" not in path.parts and "active_cid" in path.read_text()
    ]
    assert not outside


def test_conversation_knows_nothing_of_the_web_and_app_nothing_of_boto():
    for path in _sources("conversation"):
        assert not _imports(path) & {"flask", "twilio", "app"}, path
    for path in _sources("app"):
        assert not _imports(path) & {"boto3", "botocore"}, path


def test_no_app_or_conversation_module_is_over_500_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
             for p in _sources("app", "conversation")}
    assert not {name: lines for name, lines in sizes.items() if lines > 500}


def _edits_sys_path(path: Path) -> bool:
    return any(
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
    )


def test_the_project_is_installed_not_put_on_sys_path():
    assert not [
        str(path.relative_to(ROOT))
        for path in _sources("app", "conversation", "scripts", "localpeers", "tests")
        if _edits_sys_path(path)
    ]
    # Nor in the code a script hands to a child interpreter.
    bench = ROOT / "scripts" / "bench" / "bench_concurrency.py"
    assert not [text for text in _strings(bench) if "sys.path" in text]


def test_scripts_and_tests_share_only_localpeers():
    # Scripts never reach into the tests; the local DynamoDB and OpenAI stand-ins both use
    # live in localpeers/, which imports neither. Tests import a script only to test it.
    for path in _sources("scripts"):
        assert "tests" not in _imports(path), path
    for path in _sources("localpeers"):
        assert not _imports(path) & {"tests", "scripts", "app", "conversation"}, path
    helpers = [path for path in _sources("tests") if not path.name.startswith("test_")]
    for path in helpers:
        assert "scripts" not in _imports(path), path


def test_app_reaches_its_collaborators_through_typed_services_not_string_keys():
    services_module = ROOT / "app" / "services.py"
    lookups = [
        str(path.relative_to(ROOT))
        for path in _sources("app")
        if path != services_module and re.search(r"\.extensions\b|_ext\(", path.read_text())
    ]
    assert not lookups


def test_one_services_object_per_app_with_the_collaborators_it_built():
    from app import create_app
    from app.limits import Limits
    from app.services import Services, services
    from conversation import ConversationManager
    from conversation.inmemory import MemoryStore

    store = MemoryStore()
    app = create_app({"TWILIO_AUTH_TOKEN": "t" * 32}, storage=store)
    found = services(app)
    assert isinstance(found, Services)
    assert found.storage is store and isinstance(found.manager, ConversationManager)
    assert isinstance(found.limits, Limits) and found.console_sessions is None
    with app.app_context():
        assert services() is found


def test_the_turn_imports_no_flask_or_twilio_and_the_views_are_thin():
    plain = ["text_handler.py", "turn.py", "twilio_form.py"]
    # The handler's modules and every app module they import, all the way down.
    seen: set[str] = set()
    todo = [name.removesuffix(".py") for name in plain]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = ROOT / "app" / f"{module}.py"
        assert not _imports(path) & {"flask", "werkzeug", "twilio"}, path
        tree = ast.parse(path.read_text())
        todo += [node.module.split(".")[1] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app.")]
    assert {"text_handler", "limits", "memory", "twilio_form", "signed_form"} <= seen
    assert len((ROOT / "app" / "webhook.py").read_text().splitlines()) < 500
    for name in [*plain, "twilio_sms.py"]:
        assert len((ROOT / "app" / name).read_text().splitlines()) < 500, name


def test_defaults_and_the_last_resort_line_live_in_one_place():
    from app import persona, text_handler
    from app.config import DEFAULTS
    from app.offline_persona import OfflineResponder
    from app.replies import LAST_RESORT

    assert text_handler.LAST_RESORT is LAST_RESORT
    responder = persona.OpenAIResponder("sk-x", base_url="http://127.0.0.1:9/v1")
    assert responder.model == DEFAULTS["OPENAI_MODEL"]
    responder.close()
    assert OfflineResponder().max_chars == DEFAULTS["REPLY_MAX_CHARS"]
    literals = {"gpt-4o-mini"}
    for path in _sources("app"):
        if path.name != "config.py":
            assert not literals & set(_strings(path)), path


COLLABORATOR_KEYS = {
    "STORAGE", "MANAGER", "RESPONDER", "OFFLINE_RESPONDER", "MEMORY_KEEPER", "LIMITS", "SENDER",
}


def _keywords(path: Path) -> set[str]:
    """Names passed as keyword arguments (``make_app(STORAGE=...)`` forwards a config key)."""
    return {node.arg for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.keyword) and node.arg}


def test_collaborators_travel_as_create_app_arguments_not_config_keys():
    import inspect

    from app import create_app

    keywords = {name for name, p in inspect.signature(create_app).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert {key.lower() for key in COLLABORATOR_KEYS} <= keywords
    # Nobody spells the old keys, except the loader that refuses them (and its test).
    refusers = {ROOT / "app" / "config.py", ROOT / "tests" / "test_config.py", Path(__file__)}
    spelled = [
        str(path.relative_to(ROOT))
        for path in _sources("app", "conversation", "scripts", "tests")
        if path not in refusers and COLLABORATOR_KEYS & (set(_strings(path)) | _keywords(path))
    ]
    assert not spelled


def test_settings_are_read_as_typed_attributes_not_string_keys():
    # Flask's own MAX_CONTENT_LENGTH is the only value app/ puts in (or reads from) app.config.
    readers = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in _sources("app")
        for line in path.read_text().splitlines()
        if re.search(r"\.config(\[|\.get\(|\.update\()", line) and "MAX_CONTENT_LENGTH" not in line
    ]
    assert not readers


def test_the_services_fields_are_typed_without_any():
    from app.services import Services

    annotations = {name: str(hint) for name, hint in Services.__annotations__.items()}
    assert "settings" in annotations and "validator" in annotations
    assert not [name for name, hint in annotations.items() if re.search(r"\bAny\b", hint)]


def test_one_function_fits_a_reply():
    # app.sms.truncate cuts every reply (responders, the text handler, background turns).
    cutters = [
        f"{path.relative_to(ROOT)}: {node.name}"
        for path in _sources("app")
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.FunctionDef) and node.name in {"clip", "truncate", "shorten", "cut"}
    ]
    assert cutters == ["app/sms.py: truncate"]


def test_shared_defaults_live_once_in_conversation_defaults():
    # app/config.py's settings and the conversation layer's constructors take the same values
    # from conversation/defaults.py (the conversation layer cannot import app).
    import inspect

    from app.config import DEFAULTS
    from conversation import ConversationManager, DynamoDBStorage, defaults
    from conversation.memory import MemoryPolicy

    shared = {name: value for name, value in vars(defaults).items() if name.isupper()}
    assert {("DYNAMODB_" + name if name == "TABLE_NAME" else name): value
            for name, value in shared.items()} == {
        name: DEFAULTS[name] for name in
        [("DYNAMODB_" + name if name == "TABLE_NAME" else name) for name in shared]}
    storage = inspect.signature(DynamoDBStorage).parameters
    assert (storage["max_retries"].default, storage["connect_timeout"].default,
            storage["read_timeout"].default) == (DEFAULTS["DYNAMODB_MAX_RETRIES"],
                                                 DEFAULTS["DYNAMODB_CONNECT_TIMEOUT"],
                                                 DEFAULTS["DYNAMODB_READ_TIMEOUT"])
    assert DynamoDBStorage(client=object()).table_name == DEFAULTS["DYNAMODB_TABLE_NAME"]
    manager = inspect.signature(ConversationManager).parameters
    assert manager["history_limit"].default == DEFAULTS["HISTORY_MAX_MESSAGES"]
    policy = MemoryPolicy()
    assert (policy.window_messages, policy.window_chars, policy.update_every, policy.max_chars) == (
        DEFAULTS["HISTORY_MAX_MESSAGES"], DEFAULTS["HISTORY_MAX_CHARS"],
        DEFAULTS["MEMORY_UPDATE_EVERY"], DEFAULTS["MEMORY_SUMMARY_MAX_CHARS"])


def test_the_day_figures_and_console_sessions_go_through_the_store_protocol():
    # Outside the DynamoDB package and its facade, nothing reaches the table or its client.
    facade = ROOT / "conversation" / "storage.py"
    reaching = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in _sources("app", "conversation")
        if "dynamodb" not in path.parts and path != facade
        for line in path.read_text().splitlines()
        if re.search(r"storage\.(table|client)\b|\.table\.call\(", line)
    ]
    assert not reaching
    for name in ("daily_stats.py", "operator_sessions.py"):
        imported = {node.module for node in ast.walk(ast.parse((ROOT / "conversation" / name).read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module}
        assert not {module for module in imported if "dynamodb" in module}, name
