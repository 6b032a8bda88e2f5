"""The `thead` command line: one Typer app, one module per subcommand in ``thead.commands``.

A command's module (and with it torch and the rest of the library) is imported only when that command runs or
shows its own help; ``thead --help`` reads the commands' one-line help from their source. Thread counts are set
(``thead.runtime.configure_threads``) before any of that is imported.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
from typing import Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info
from typer.models import CommandInfo

import thead
from thead.commands.logs import NativeStderrFilter, quiet_environment
from thead import runtime

# Command name -> (module, function); the module is imported when the command is first looked up.
COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("thead.commands.preprocess", "preprocess"),
    "fit-3dmm": ("thead.commands.fit_3dmm", "fit_3dmm"),
    "reenact": ("thead.commands.reenact", "reenact"),
    "edit": ("thead.commands.edit", "edit"),
    "audio-drive": ("thead.commands.audio_drive", "audio_drive"),
    "evaluate": ("thead.commands.evaluate", "evaluate"),
    "status": ("thead.commands.status", "status"),
    "weights": ("thead.commands.weights", "weights"),
    "train": ("thead.commands.train", "train_app"),
}


def command_docstring(module: str, function: str) -> str:
    """The docstring of ``module.function`` read from its source file, without importing the module."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return ""
    with open(spec.origin, encoding="utf8") as fh:
        tree = ast.parse(fh.read(), spec.origin)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return ast.get_docstring(node) or ""
        if isinstance(node, ast.Module) or not isinstance(node, ast.Assign):
            continue
        # a Typer sub-app: ``name = typer.Typer(..., help="...")``
        if any(isinstance(t, ast.Name) and t.id == function for t in node.targets) and \
                isinstance(node.value, ast.Call):
            for kw in node.value.keywords:
                if kw.arg == "help" and isinstance(kw.value, ast.Constant):
                    return str(kw.value.value)
    return ""


class LazyGroup(TyperGroup):
    """A Typer group whose commands (``COMMANDS``) are imported on first use."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._listing = False

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*self.commands, *(name for name in COMMANDS if name not in self.commands)]

    def get_command(self, ctx: typer.Context, cmd_name: str):
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module, function = COMMANDS[cmd_name]
        if self._listing:  # the group's help: name and help text only
            return TyperCommand(name=cmd_name, help=command_docstring(module, function),
                                rich_markup_mode=self.rich_markup_mode)
        callback = getattr(importlib.import_module(module), function)
        runtime.apply_threads()  # torch/OpenCV may have been imported just now
        if isinstance(callback, typer.Typer):  # a sub-app (``thead train ...``): a group of commands
            command = typer.main.get_group(callback)
            command.name = cmd_name
            for sub in command.commands.values():
                run_sub = sub.callback

                def started_sub(*args: Any, _run=run_sub, **kwargs: Any) -> Any:
                    runtime.apply_threads()
                    runtime.mark_startup()
                    return _run(*args, **kwargs)

                sub.callback = started_sub
            self.commands[cmd_name] = command
            return command
        command = get_command_from_info(CommandInfo(name=cmd_name, callback=callback),
                                        pretty_exceptions_short=True, rich_markup_mode=self.rich_markup_mode)
        run = command.callback

        def started(*args: Any, **kwargs: Any) -> Any:
            runtime.apply_threads()
            runtime.mark_startup()
            return run(*args, **kwargs)

        command.callback = started
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(self, ctx: typer.Context, args: list[str]):
        try:
            return self._click_resolve_command(ctx, args)
        except Exception as err:  # "No such command": suggest the closest names, lazy ones included
            message = getattr(err, "message", None)
            matches = difflib.get_close_matches(args[0], list(COMMANDS)) if args and isinstance(message, str) else []
            if matches:
                err.message = f"{message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise


app = typer.Typer(
    name="thead",
    cls=LazyGroup,
    help="Talking heads from one photo: preprocess -> fit-3dmm -> reenact / edit -> evaluate. "
    "Every command takes files or directories, skips work whose cache is current, and exits non-zero "
    "when any item failed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"thead {thead.__version__}")
        raise typer.Exit()


def _threads(value: Optional[int]) -> Optional[int]:
    if value is not None:
        if value < 1:
            raise typer.BadParameter("needs at least 1")
        plan = runtime.current_plan()
        if plan is None or (plan.threads, plan.source) != (value, runtime.THREADS_ENV):  # else: main() applied it
            runtime.configure_threads(value)
    return value


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", help="Also show the native libraries' log lines "
                                 "(MediaPipe / TensorFlow Lite / absl I0000 and W0000 lines), hidden by default."),
    threads: Optional[int] = typer.Option(
        None, "--threads", callback=_threads, is_eager=True, envvar=runtime.THREADS_ENV, show_envvar=True,
        help="CPU threads for torch, OpenMP and OpenCV. Default: the CPUs this process may use (affinity, cgroup "
        "quota) shared among the thead commands running on them; give 1 to each of several workers on one node."),
) -> None:
    """Talking heads from one photo."""
    quiet_environment(verbose)
    if not verbose:
        native_filter = NativeStderrFilter()
        if native_filter.start():
            ctx.call_on_close(native_filter.stop)


def main() -> None:
    """The CLI in this process: ``app()`` after the thread set-up (ends with ``SystemExit``, as Typer apps do)."""
    runtime.configure_threads()  # before any command module imports torch
    app()


def run() -> None:
    """The ``thead`` program (console script, ``python -m thead``): :func:`main`, then the process ends with its
    status without the interpreter's teardown (``thead.runtime.exit_now``: 0.3-0.5 s of every command)."""
    try:
        main()
    except SystemExit as stop:
        runtime.exit_now(stop.code)
    runtime.exit_now(0)
