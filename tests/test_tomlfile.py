"""The shared reader of MCP_TOKENS_FILE and MCP_PRICES_FILE: one error shape, naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_image_server.prices import load_prices_file
from mcp_image_server.tenants import load_tokens_file
from mcp_image_server.tomlfile import read_tables

ROW = 'provider = "local"\nusd = 0.01\n'


def _file(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "file.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def test_an_empty_value_is_no_file_and_tables_keep_their_header_lines(tmp_path: Path) -> None:
    assert read_tables("  ", "prices") is None
    file = read_tables(_file(tmp_path, f"# prices\n[[prices]]\n{ROW}\n[[ prices ]]\n{ROW}"), "prices")
    assert file is not None and file.lines == (2, 6) and len(file.tables) == 2
    assert file.where(1) == f"{file.path} line 6"


@pytest.mark.parametrize("load", [load_prices_file, load_tokens_file], ids=["prices", "tokens"])
@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        (b"# ok\n# \xff\n", "is not UTF-8 text (line 2)"),
        ("[[{name}]\n", "is not valid TOML: Expected ']]' at the end of an array declaration (at line 1, column 9)"),
        ("colour = 'red'\n[[{name}]]\n", "line 1: unknown top-level key 'colour' (expected [[{name}]])"),
        ("[[{name}]]\nextra = 1\n[extra]\nx = 1\n", "line 3: unknown top-level key 'extra'"),
        ("\n[{name}]\nx = 1\n", "line 2: expected [[{name}]] tables"),
        ("", ": expected [[{name}]] tables"),
        ("{name} = [1]\n", "[[{name}]] #1: each [[{name}]] entry must be a table"),
        ("\n\n[[{name}]]\nzzz = 1\n", "line 3: unknown key 'zzz' (known: "),
    ],
)
def test_both_files_report_the_same_errors_naming_file_line_and_key(
    tmp_path: Path, load: object, text: str | bytes, wanted: str
) -> None:
    name = "prices" if load is load_prices_file else "tokens"
    if isinstance(text, str):
        text = text.replace("{name}", name)
    path = _file(tmp_path, text)
    with pytest.raises(ValueError) as err:
        load(path)  # type: ignore[operator]
    message = str(err.value)
    assert message.startswith(str(Path(path).resolve())), message
    assert wanted.replace("{name}", name) in message, message


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        load_prices_file(str(tmp_path / "nope.toml"))
    assert str(err.value) == f"cannot read {tmp_path / 'nope.toml'}: No such file or directory"


def test_a_bad_price_row_names_its_line_and_key(tmp_path: Path) -> None:
    text = f"[[prices]]\n{ROW}\n[[prices]]\nprovider = \"openai\"\nusd = -1\n"
    with pytest.raises(ValueError) as err:
        load_prices_file(_file(tmp_path, text))
    assert str(err.value).endswith("line 5: key 'usd' must be a number >= 0, got -1"), str(err.value)
    table = load_prices_file(_file(tmp_path, f"[[prices]]\n{ROW}"))
    assert table is not None and [(r.provider, r.usd) for r in table.rows] == [("local", 0.01)]
