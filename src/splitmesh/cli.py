"""The ``splitmesh`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from splitmesh.errors import ConfigError, SplitmeshError

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
    if value.lower() in ("none", "off", "0"):
        return None
    try:
        return float(value)
    except ValueError:
        raise ConfigError(
            f"A resampling ratio must be a number or 'none'. Got {value!r}."
        ) from None


def _widths(value: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in value.split(",") if w.strip())
    except ValueError:
        raise ConfigError(
            f"The '{name}' parameter must be comma-separated widths like 64,16. Got {value!r}."
        ) from None


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
    domains_sweep: Annotated[
        bool, typer.Option(help="run 1, 2, 3 domains and plot what each adds")
    ] = False,
    epochs: Annotated[int, typer.Option(help="maximum epochs")] = 100,
    patience: Annotated[
        int, typer.Option(help="stop after N epochs without validation gain; 0: no selection")
    ] = 20,
    select_metric: Annotated[
        str, typer.Option(help="validation metric that picks the epoch")
    ] = "log_loss",
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    bottom: Annotated[
        str, typer.Option(help="bottom MLP widths; the last is the cut layer")
    ] = "64,16",
    top: Annotated[str, typer.Option(help="top MLP widths")] = "32",
    aggregation: Annotated[str, typer.Option(help="concat | sum | mean")] = "concat",
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
    from splitmesh.nn.network import NetworkSpec
    from splitmesh.report import plot_domains_sweep, print_binary_report, write_results
    from splitmesh.split.common import MODES, OptimConfig
    from splitmesh.split.trainer import TrainConfig
    from splitmesh.usecases.fraud import FraudConfig, run_domains_sweep, run_fraud

    cfg = FraudConfig(
        data=str(data) if data else None,
        synthetic_rows=synthetic_rows,
        domains=domains,
        modes=MODES if mode == "all" else (mode,),
        train=TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            patience=patience or None,
            select_metric=select_metric,
        ),
        optim=OptimConfig(lr=lr, weight_decay=weight_decay),
        spec=NetworkSpec(
            bottom=_widths(bottom, "bottom"), top=_widths(top, "top"), aggregation=aggregation
        ),
        resample=ResampleConfig(_ratio(smote_ratio), _ratio(under_ratio), k_neighbors),
        test=test,
        validation=validation,
        wire_dtype=wire_dtype,
    )
    show = progress and sys.stderr.isatty()
    results = (
        run_domains_sweep(cfg, progress=show) if domains_sweep else run_fraud(cfg, progress=show)
    )
    print_binary_report(results, console)
    if out:
        for p in write_results(results, out):
            console.print(f"wrote {p}")
        if domains_sweep:
            console.print(f"wrote {plot_domains_sweep(results, out)}")


def main() -> None:
    try:
        app()
    except SplitmeshError as exc:
        # soft_wrap: never break an error line (paths, values) at the terminal's width
        err.print(f"[bold red]{type(exc).__name__}[/bold red]: {escape(str(exc))}", soft_wrap=True)
        if exc.hint:
            err.print(f"hint: {escape(exc.hint)}", soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
