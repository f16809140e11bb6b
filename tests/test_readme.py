"""Every `convkit` command shown in the README's Commands section runs and exits 0."""

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from convkit.cli import main
from tests.conftest import ROOT


def readme_commands() -> list[str]:
    commands_section = ROOT.joinpath("README.md").read_text().split("## Commands", 1)[1]
    blocks = re.findall(r"```sh\n(.*?)```", commands_section, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("convkit ")]


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 6


@pytest.mark.parametrize(
    "command",
    [pytest.param(c, marks=pytest.mark.slow) if " verify" in c else c for c in readme_commands()],
)
def test_readme_command_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sample_images").symlink_to(ROOT / "sample_images")
    words = shlex.split(command)[1:]
    stdin = stdout = None
    if "<" in words:  # a shell redirection: feed the file to standard input
        at = words.index("<")
        stdin = Path(words[at + 1]).read_bytes()
        del words[at : at + 2]
    if ">" in words:
        at = words.index(">")
        stdout = Path(words[at + 1])
        del words[at : at + 2]
    result = CliRunner().invoke(main, words, input=stdin)
    assert result.exit_code == 0, result.output
    if stdout is not None:
        stdout.parent.mkdir(parents=True, exist_ok=True)
        stdout.write_bytes(result.stdout_bytes)
        assert result.stdout_bytes.startswith(b"\x89PNG")
