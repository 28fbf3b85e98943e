from __future__ import annotations

from pathlib import Path

import pytest

from mcp_image_server.config import Secret, load_settings, reload_settings
from mcp_image_server.errors import ConfigError


def test_defaults_match_the_declared_fields() -> None:
    s = load_settings({})
    assert s.transport == "stdio" and s.host == "127.0.0.1" and s.port == 8000
    assert s.image_record_ttl == 86400 and s.get_image_data_max_bytes == 10 * 1024 * 1024
    assert s.openai_model == "gpt-image-2" and s.modelscope_model == "Qwen/Qwen-Image"
    assert s.env_file is None


def test_flag_beats_environment_beats_dotenv_beats_default(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("MCP_PORT=9001\nMCP_HOST=0.0.0.0\nMCP_LOG_LEVEL=debug\n")
    s = load_settings({"MCP_PORT": "9002", "MCP_HOST": "10.0.0.1"}, env_file, {"MCP_HOST": "127.0.0.2"})
    assert s.host == "127.0.0.2"  # flag
    assert s.port == 9002  # env over .env
    assert s.log_level == "DEBUG"  # .env over default
    assert s.env_file == env_file.resolve()


def test_dotenv_in_the_working_directory_is_read_by_default(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MCP_DEFAULT_PROVIDER=local\n")
    assert load_settings({}).default_provider == "local"


def test_dotenv_override_lets_the_file_win(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MCP_PORT=9001\n")
    assert load_settings({"MCP_PORT": "9002"}, dotenv_override=True).port == 9001


@pytest.mark.parametrize(
    ("env", "name", "value"),
    [
        ({"MCP_TRANSPORT": "websocket"}, "MCP_TRANSPORT", "'websocket'"),
        ({"MCP_PORT": "eighty"}, "MCP_PORT", "'eighty'"),
        ({"MCP_PORT": "70000"}, "MCP_PORT", "'70000'"),
        ({"MCP_IMAGE_RECORD_TTL": "0"}, "MCP_IMAGE_RECORD_TTL", "'0'"),
        ({"MCP_PUBLIC_BASE_URL": "ftp://x"}, "MCP_PUBLIC_BASE_URL", "'ftp://x'"),
        ({"MCP_LOG_LEVEL": "loud"}, "MCP_LOG_LEVEL", "'loud'"),
        ({"MCP_ALLOW_UNAUTHENTICATED": "maybe"}, "MCP_ALLOW_UNAUTHENTICATED", "'maybe'"),
    ],
)
def test_invalid_values_name_the_variable_and_value(env: dict[str, str], name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.code == "config_error"
    assert f"{name}={value}" in info.value.message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"MCP_PORT": "x", "MCP_TRANSPORT": "y"})
    assert len(info.value.details["problems"]) == 2


def test_missing_env_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings({}, tmp_path / "nope.env")


def test_secrets_are_masked_everywhere() -> None:
    s = load_settings({"OPENAI_API_KEY": "sk-FAKE-visible-123", "MCP_AUTH_TOKEN": "tok-one, tok-two"})
    assert isinstance(s.openai_api_key, Secret) and s.openai_api_key.get() == "sk-FAKE-visible-123"
    assert [t.get() for t in s.auth_tokens] == ["tok-one", "tok-two"]
    for text in (repr(s), str(s), repr(s.public_dict())):
        assert "sk-FAKE-visible-123" not in text and "tok-one" not in text
    assert s.public_dict()["OPENAI_API_KEY"] == "set"
    assert s.public_dict()["DOUBAO_API_KEY"] == "unset"


def test_modelscope_sdk_token_is_accepted_as_an_alias() -> None:
    s = load_settings({"MODELSCOPE_SDK_TOKEN": "ms-FAKE"})
    assert s.modelscope_api_key is not None and s.modelscope_api_key.get() == "ms-FAKE"
    s = load_settings({"MODELSCOPE_SDK_TOKEN": "ms-old", "MODELSCOPE_API_KEY": "ms-new"})
    assert s.modelscope_api_key is not None and s.modelscope_api_key.get() == "ms-new"


def test_reload_reports_changed_and_restart_only_fields(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MCP_IMAGE_RECORD_TTL=100\n")
    current = load_settings({}, env_file)
    env_file.write_text("MCP_IMAGE_RECORD_TTL=200\nMCP_PORT=9999\nOPENAI_API_KEY=sk-FAKE-new\n")
    result = reload_settings(current, {})
    assert set(result.changed) == {"MCP_IMAGE_RECORD_TTL", "OPENAI_API_KEY"}
    assert result.restart_required == ("MCP_PORT",)
    assert result.settings.image_record_ttl == 200
    assert result.settings.port == 8000  # restart-only: the running value stays


def test_failed_reload_raises_and_leaves_the_snapshot_alone(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MCP_IMAGE_RECORD_TTL=100\n")
    current = load_settings({}, env_file)
    env_file.write_text("MCP_IMAGE_RECORD_TTL=-5\n")
    with pytest.raises(ConfigError):
        reload_settings(current, {})
    assert current.image_record_ttl == 100


def test_settings_are_frozen() -> None:
    s = load_settings({})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]
