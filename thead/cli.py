"""The `thead` command line: one Typer app, one module per subcommand in ``thead.commands``."""

from __future__ import annotations

import typer

import thead
from thead.commands.edit import edit
from thead.commands.logs import NativeStderrFilter, quiet_environment
from thead.commands.evaluate import evaluate
from thead.commands.fit_3dmm import fit_3dmm
from thead.commands.preprocess import preprocess
from thead.commands.reenact import reenact
from thead.commands.weights import weights

app = typer.Typer(
    name="thead",
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


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", help="Also show the native libraries' log lines "
                                 "(MediaPipe / TensorFlow Lite / absl I0000 and W0000 lines), hidden by default."),
) -> None:
    """Talking heads from one photo."""
    quiet_environment(verbose)
    if not verbose:
        native_filter = NativeStderrFilter()
        if native_filter.start():
            ctx.call_on_close(native_filter.stop)


app.command("preprocess")(preprocess)
app.command("fit-3dmm")(fit_3dmm)
app.command("reenact")(reenact)
app.command("edit")(edit)
app.command("evaluate")(evaluate)
app.command("weights")(weights)


def main() -> None:
    app()
