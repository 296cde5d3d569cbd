"""`chorus`: one command line for every recipe in the project.

Each sub-command forwards its arguments to the entry module's ``main(argv)``,
imported only when that sub-command runs, so `chorus --help` stays instant.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("data.synth.cli", "generate synthetic 3DGS rooms with labels, captions and Q&A"),
    "render": ("data.render", "render a view of a scene to a PNG"),
    "lift": ("encoder.lift", "lift 2D teacher features onto the Gaussians of scene folders"),
    "pretrain": ("encoder.pretrain", "multi-teacher pretraining of the Chorus encoder"),
    "eval": ("encoder.evaluate", "zero-shot / instance / probing evaluation of an encoder"),
    "adapt": ("encoder.adapt", "render-and-distill adaptation of an encoder to a new domain"),
    "train-qa": ("chorus_qa.train_qa", "train the scene Q&A model (projector + LoRA)"),
    "benchmark": ("chorus_qa.benchmark", "run a Q&A benchmark and write predictions + metrics"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: chorus COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`chorus COMMAND --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"chorus: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            print(f"chorus {name}: this build has no {module_name} module", file=sys.stderr)
            return 2
        raise
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
