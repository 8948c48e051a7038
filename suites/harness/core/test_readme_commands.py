"""Every `python -m harness ...` command in the README's code blocks is accepted by the CLI as written: a renamed or
removed option fails here instead of on a reader's machine. (The commands that run on a CPU are run for real in
test_committed_tree.py and the flow tests; GPU ones are parsed only.)"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]
PLACEHOLDERS = {"DIR": "{tmp}"}  # words of the README that stand for a reader's own value


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)  # continuation lines
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            line = re.sub(r"^(PYTHONPATH=\S+\s+|TRITON_INTERPRET=\S+\s+)+", "", line)
            if line.startswith("python -m harness "):
                commands.append(line)
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_commands():
    assert len(COMMANDS) >= 15 and "python -m harness run" in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # relative paths in the README are relative to the repository root
    if "cuda" in command:  # a GPU command: parse it as a GPU machine would
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    argv = [PLACEHOLDERS.get(a, a).format(tmp=tmp_path) for a in shlex.split(command)[3:]]
    args, extra = build_parser().parse_known_args(argv)
    assert not extra, f"{command}: unknown arguments {extra}"
    assert args.command == argv[0]
    if argv[0] == "train-dllm":
        assert args.out is None or args.force or not Path(args.out).exists(), "this command would be refused"
