"""The ``splitmesh`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from splitmesh.errors import SplitmeshError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Split learning across the domains of a data mesh.",
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Split learning across the domains of a data mesh."""


def _ratio(value: str) -> float | None:
    return None if value.lower() in ("none", "off", "0") else float(value)


@app.command()
def fraud(
    mode: Annotated[
        str, typer.Option(help="centralized | label-sharing | label-preserving | all")
    ] = "all",
    data: Annotated[
        Path | None,
        typer.Option(help="a creditcard.csv (default: the real subset in ../shared/data)"),
    ] = None,
    synthetic_rows: Annotated[
        int | None, typer.Option(help="generate N rows of the schema instead")
    ] = None,
    domains: Annotated[int, typer.Option(help="the first N of payments, cardholder, security")] = 3,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    smote_ratio: Annotated[
        str, typer.Option(help="minority ratio after SMOTE, or 'none'")
    ] = "0.015",
    under_ratio: Annotated[
        str, typer.Option(help="minority ratio after undersampling, or 'none'")
    ] = "0.02",
    k_neighbors: int = 5,
    test: float = 0.3,
    validation: float = 0.15,
    wire_dtype: Annotated[str, typer.Option(help="float32 | float16 on the wire")] = "float32",
    out: Annotated[Path | None, typer.Option(help="write results.json and report.md here")] = None,
    progress: bool = True,
) -> None:
    """Credit-card fraud detection, split across three domains, against a centralized baseline."""
    from splitmesh.data.resampling import ResampleConfig
    from splitmesh.report import print_binary_report, write_results
    from splitmesh.split.common import MODES, OptimConfig
    from splitmesh.split.trainer import TrainConfig
    from splitmesh.usecases.fraud import FraudConfig, run_fraud

    cfg = FraudConfig(
        data=str(data) if data else None,
        synthetic_rows=synthetic_rows,
        domains=domains,
        modes=MODES if mode == "all" else (mode,),
        train=TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed),
        optim=OptimConfig(lr=lr),
        resample=ResampleConfig(_ratio(smote_ratio), _ratio(under_ratio), k_neighbors),
        test=test,
        validation=validation,
        wire_dtype=wire_dtype,
    )
    results = run_fraud(cfg, progress=progress and sys.stderr.isatty())
    print_binary_report(results, console)
    if out:
        for p in write_results(results, out):
            console.print(f"wrote {p}")


def main() -> None:
    try:
        app()
    except SplitmeshError as exc:
        err.print(f"[bold red]{type(exc).__name__}[/bold red]: {exc}")
        if exc.hint:
            err.print(f"hint: {exc.hint}")
        sys.exit(exc.exit_code)
    except ValueError as exc:  # typer/click parse errors of ratio strings etc.
        err.print(f"[bold red]Error[/bold red]: {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
