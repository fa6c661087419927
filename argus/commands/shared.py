"""What the commands share: parameter types, the error decorator and the table printer.

- `list_option`: a list that may be given as a comma list, by repeating the option, or both
  (`--kind a --kind b`, `--kind a,b`); items checked against fixed choices or a registry.
- `LazyDefault` / `config_default`: defaults read from registries and config dataclasses (not
  repeated in help strings), shown by `--help`.
- `Seeds`: `--seeds 5` (seeds 0..4) or `--seeds 1,3,7`.
- `KeyValue`: `KEY=VALUE` (or `SCOPE.KEY=VALUE`) with JSON values, parsed here only.
- `NameChoice`: a name from one of the plug-in registries (`training.registry.Registry`) or a
  tuple of names, imported only when the option is used or its help shown.
- `cli_errors`: bad input (a `ValueError`, a missing file, a refused crowd request, an MTurk
  error) ends as one `Error: ...` line naming the file, field or value; bugs keep their traceback.
- `format_table`: rows as a padded plain-text table.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence

import click

# ------------------------------------------------------------------------------- parameter types


def split_list(text: str) -> list[str]:
    """`"a, b,,c"` -> `["a", "b", "c"]`."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


class LazyDefault:
    """An option default computed on first use (it needs an import, e.g. a registry or a
    config dataclass); `--help` shows its value."""

    def __init__(self, make: Callable[[], object]):
        self.make = make

    def __call__(self):
        return self.make()

    def __str__(self) -> str:
        value = self.make()
        return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


class NameChoice(click.ParamType):
    """A name from the registry (`training.registry.Registry`: any case, `_` for `-`, aliases)
    or the tuple of names at `spec` ("module:ATTRIBUTE"), imported on first use; `--help` shows
    the names as click shows choices. `validate=False` leaves unknown names to the command (which
    may report them all at once)."""

    name = "name"

    def __init__(self, spec: str, validate: bool = True):
        self.spec = spec
        self.validate = validate

    def names(self) -> list[str]:
        found = _resolve(self.spec)
        return found.names() if hasattr(found, "names") else list(found)

    def get_metavar(self, param, ctx) -> str:
        return "[" + "|".join(self.names()) + "]"

    def convert(self, value, param, ctx) -> str:
        found = _resolve(self.spec)
        if not self.validate:
            return found.resolve(value) if value in found and hasattr(found, "resolve") else value
        if hasattr(found, "resolve"):
            try:
                return found.resolve(value)
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        if value not in found:
            self.fail(f"{value!r} is not one of {', '.join(found)}", param, ctx)
        return value

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(n) for n in self.names() if n.startswith(incomplete)]


class NameList(click.ParamType):
    """Comma-separated items -> a tuple, each converted by `item` (a `NameChoice`, `click.INT`,
    ...; None keeps the text). Used through `list_option`."""

    name = "list"

    def __init__(self, item: click.ParamType | None = None):
        self.item = item

    def get_metavar(self, param, ctx) -> str:
        inner = self.item.get_metavar(param, ctx) if self.item is not None else None
        return f"{inner or (self.item.name.upper() if self.item is not None else 'NAME')}[,...]"

    def convert(self, value, param, ctx) -> tuple:
        if isinstance(value, tuple):
            return value
        items = split_list(value) if isinstance(value, str) else [value]
        return tuple(self.item.convert(v, param, ctx) for v in items) if self.item is not None else tuple(items)


def _flatten(ctx, param, values) -> tuple:
    return tuple(item for group in values or () for item in group)


def list_option(*param_decls: str, names: str | None = None, item: click.ParamType | None = None, **attrs):
    """A `click.option` for a list given as `a,b`, as `--opt a --opt b`, or both; the command
    receives one flat tuple. Items are names from `names` (a `NameChoice` spec) or converted by
    `item` (e.g. `NameChoice(spec, validate=False)`, `click.INT`). `default`: a sequence, or a
    `LazyDefault` returning one."""
    default = attrs.pop("default", None)
    if default is not None and not isinstance(default, LazyDefault):
        default = tuple(default)
    return click.option(*param_decls, type=NameList(NameChoice(names) if names else item), multiple=True,
                        default=default, callback=_flatten, **attrs)


class Seeds(click.ParamType):
    """`5` -> seeds 0..4; `1,3,7` -> those seeds (a list of ints, at least one)."""

    name = "seeds"

    def convert(self, value, param, ctx) -> list[int]:
        if isinstance(value, list):
            return value
        text = str(value).strip()
        try:
            seeds = list(range(int(text))) if "," not in text else [int(s) for s in split_list(text)]
        except ValueError:
            self.fail(f"expected a count or a comma-separated list of integers, got {value!r}", param, ctx)
        if not seeds:
            self.fail(f"need at least one seed, got {value!r}", param, ctx)
        return seeds

    def get_metavar(self, param, ctx) -> str:
        return "N|S1,S2,..."


class KeyValue(click.ParamType):
    """`KEY=VALUE` -> `(key, value)`; with a `scope` (its name, e.g. "METHOD"),
    `SCOPE.KEY=VALUE` -> `(scope, key, value)`. VALUE is JSON when it parses (`2`, `0.5`,
    `true`, `[1,2]`), else the text; `-` in KEY becomes `_` (keyword-argument names)."""

    name = "key=value"

    def __init__(self, scope: str | None = None):
        self.scope = scope
        self.scoped = scope is not None

    def get_metavar(self, param, ctx) -> str:
        return f"{self.scope}.KEY=VALUE" if self.scoped else "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        scope, dot, key = key.partition(".") if self.scoped else ("", ".", key)
        if not sep or not dot or not key.strip() or (self.scoped and not scope.strip()):
            self.fail(f"expected {self.get_metavar(param, ctx)}, got {value!r}", param, ctx)
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = text
        key = key.strip().replace("-", "_")
        return (scope.strip(), key, parsed) if self.scoped else (key, parsed)


def options_dict(pairs) -> dict:
    """`KeyValue()` results -> `{key: value}`; scoped ones -> `{scope: {key: value}}`."""
    out: dict = {}
    for pair in pairs or ():
        if len(pair) == 3:
            out.setdefault(pair[0], {})[pair[1]] = pair[2]
        else:
            out[pair[0]] = pair[1]
    return out


def _resolve(spec: str):
    """The object at "module:ATTRIBUTE" (imported on first use)."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def config_default(config_class: str, field: str) -> LazyDefault:
    """The default of `field` in the dataclass at `config_class` ("module:Class"), read when used."""

    def make():
        import dataclasses

        f = {f.name: f for f in dataclasses.fields(_resolve(config_class))}[field]
        return f.default_factory() if f.default is dataclasses.MISSING else f.default

    return LazyDefault(make)


# ------------------------------------------------------------------------------------- errors

# Errors that mean "bad input" besides ValueError (and OSErrors that name a file), by module so
# that the decorator imports nothing: a class counts only when its module is already loaded.
INPUT_ERRORS = ("crowd.service:ServiceError", "crowd.providers.mturk_client:MTurkError")
FILE_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)
# botocore's credential errors name the missing source, never a secret
CREDENTIAL_ERRORS = ("NoCredentialsError", "PartialCredentialsError", "ProfileNotFound")


def _input_error_types() -> tuple[type, ...]:
    types: list[type] = [ValueError]
    for spec in INPUT_ERRORS:
        module, _, name = spec.partition(":")
        if module in sys.modules and hasattr(sys.modules[module], name):
            types.append(getattr(sys.modules[module], name))
    return tuple(types)


def error_message(exc: BaseException) -> str | None:
    """One line for an input error; None for anything else (a bug: keep the traceback)."""
    if isinstance(exc, FILE_ERRORS) or (isinstance(exc, OSError) and exc.filename is not None):
        return f"{exc.filename}: {exc.strerror}" if exc.filename is not None and exc.strerror else str(exc)
    if isinstance(exc, _input_error_types()):
        return str(exc)
    if type(exc).__name__ in CREDENTIAL_ERRORS:
        return f"{exc}. Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or use --profile (see docs/mturk.md)."
    return None


def cli_errors(fn):
    """Decorator for a command: input errors become `click.ClickException` (exit 1, one line);
    `ARGUS_DEBUG=1` keeps their tracebacks too."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as exc:
            message = error_message(exc)
            if message is None or os.environ.get("ARGUS_DEBUG"):
                raise
            raise click.ClickException(message) from None

    return wrapper


# -------------------------------------------------------------------------------------- tables


def format_table(rows: Sequence[dict] | Sequence[Sequence], columns: Sequence[str] | None = None,
                 float_format: str | None = None) -> str:
    """Rows (dicts, or sequences with `columns` as headers) as a plain-text table: a header, a
    rule, columns padded to their widest cell. None prints empty; floats use `float_format`
    (e.g. "{:.2f}") when given. No rows: "(none)"."""
    if not rows:
        return "(none)"
    if isinstance(rows[0], dict):
        columns = list(columns or rows[0])
        rows = [[r.get(c) for c in columns] for r in rows]
    columns = [str(c) for c in columns]

    def cell(v) -> str:
        if v is None:
            return ""
        if float_format and isinstance(v, float):
            return float_format.format(v)
        return str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)
