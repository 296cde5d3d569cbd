"""The `chorus` dispatcher: every advertised command resolves to a module with main()."""

import importlib

import pytest

from chorus_qa import cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command_is_an_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_command_modules_have_main(name):
    module = importlib.import_module(cli.COMMANDS[name][0])
    assert callable(getattr(module, "main", None)), f"{cli.COMMANDS[name][0]} has no main(argv)"
