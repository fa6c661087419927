"""The `argus` command line.

Each top-level command lives in its own module under `argus.commands` and is imported only
when it is invoked, so `argus --help` stays fast and a broken optional stage never breaks
the others.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of a click.Command
COMMANDS: dict[str, str] = {
    "data": "argus.commands.data:data",
    "train": "argus.commands.train:train",
    "eval": "argus.commands.evaluate:evaluate",
    "explain": "argus.commands.explain:explain",
    "crowd": "argus.commands.crowd:crowd",
    "mturk": "argus.commands.mturk:mturk",
    "report": "argus.commands.report:report",
    "active": "argus.commands.active:active",
    "experiment": "argus.commands.experiment:experiment",
    "demo": "argus.commands.demo:demo",
    "improve": "argus.commands.improve:improve",
}

HELP = {
    "data": "Make the embedded toy world or check a dataset folder.",
    "train": "Train a model on a dataset folder.",
    "eval": "Evaluate a trained model per domain.",
    "explain": "Write argument sheets for a model's predictions.",
    "crowd": "Run the crowd task server and manage batches.",
    "mturk": "Launch and manage batches on Amazon Mechanical Turk.",
    "report": "Analyse crowd judgments and write a report.",
    "active": "Run active-learning rounds.",
    "experiment": "Run comparison experiments (blind domains, active learning).",
    "demo": "Run the whole pipeline on the embedded toy world.",
    "improve": "Retrain a model with a correction from the crowd's clues; measure before and after.",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return _not_available(name)
        return getattr(module, attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _not_available(name: str) -> click.Command:
    @click.command(name, help=HELP.get(name, ""))
    def stub():
        raise click.ClickException(f"'argus {name}' is not available in this build.")

    return stub


@click.group(cls=LazyGroup)
@click.version_option(package_name="argus-xai")
def cli():
    """Argus: make a CNN's reasoning readable and test it with people."""


def main():
    cli()


if __name__ == "__main__":
    main()
