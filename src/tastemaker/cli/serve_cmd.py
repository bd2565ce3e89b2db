"""``tastemaker serve``: the HTTP API and web page for one model directory (uvicorn)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from tastemaker.cli.common import err_console
from tastemaker.errors import UsageError


def serve(
    model_dir: Annotated[Path, typer.Argument(help="A model directory written by train.")],
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", help="Worker processes (the model's large arrays are shared by them)."
        ),
    ] = 1,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log a line per request (off by default: formatting it costs every request).",
        ),
    ] = False,
) -> None:
    """Serve recommendations over HTTP (see SERVE_HELP)."""
    single_threaded_libraries()
    import uvicorn

    from tastemaker.serving.app import create_app
    from tastemaker.serving.state import load_bundle
    from tastemaker.serving.workers import SharedModel

    if workers < 1:
        raise UsageError(f"--workers must be at least 1; got {workers}")
    if not 0 < port < 65536:
        raise UsageError(f"--port must be between 1 and 65535; got {port}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    settings = checked_settings(model_dir)
    logging.getLogger("tastemaker.serving").info(
        "access log %s", "on" if access_log else "off (--access-log to log every request)"
    )
    if workers == 1:
        # Load (and validate) before binding the port: a bad directory is one line and exit 2.
        with err_console.status(f"loading {model_dir}"):
            bundle = load_bundle(model_dir, settings)
        uvicorn.run(
            create_app(settings, bundle), **server_options(host, port, settings, access_log)
        )
        return
    # Several processes: each worker builds its own app from the environment, and follows the
    # model published in a file they share (a reload in one worker reaches them all). The
    # model's large arrays are memory-mapped from files in the same private folder
    # (serving.shared_arrays), written by the first load: the check below.
    with tempfile.TemporaryDirectory(prefix="tastemaker-serve-") as shared_dir:
        shared = SharedModel(Path(shared_dir) / "model.json")
        settings = settings.model_copy(update={"workers_file": shared.path})
        with err_console.status(f"loading {model_dir}"):
            directory, version = validated_elsewhere(model_dir, settings)
        with shared.exclusive():
            shared.publish(directory, version)
        os.environ["TASTEMAKER_MODEL_DIR"] = str(model_dir.resolve())
        os.environ["TASTEMAKER_WORKERS_FILE"] = str(shared.path)
        uvicorn.run(
            "tastemaker.serving.app:create_app",
            factory=True,
            workers=workers,
            **server_options(host, port, settings, access_log),
        )


def server_options(host: str, port: int, settings, access_log: bool) -> dict:
    return {
        "host": host,
        "port": port,
        "log_level": settings.log_level,
        "access_log": access_log,
        # Request heads over the limit answer 431 (serving.http; h11 applies the same limit).
        "http": http_protocol(),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }


def validated_elsewhere(model_dir: Path, settings) -> tuple[Path, str]:
    """Load and check the model in a spawned process that then exits, for ``--workers N``:
    the supervisor, which answers nothing, would otherwise keep what the load allocated (a
    60,000-artist model: 120 MiB beside each worker's copy). Its directory and version."""
    import concurrent.futures
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(_validated, model_dir, settings).result()


def _validated(model_dir: Path, settings) -> tuple[Path, str]:
    from tastemaker.serving.state import load_bundle

    single_threaded_libraries()
    bundle = load_bundle(model_dir, settings)
    return bundle.directory, bundle.version


def checked_settings(model_dir: Path):
    """The service's settings (TASTEMAKER_* variables); a bad one is one line, exit 2."""
    from pydantic import ValidationError

    from tastemaker.serving.settings import ServeSettings

    try:
        return ServeSettings(model_dir=model_dir)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = "TASTEMAKER_" + "_".join(str(x) for x in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            problems.append(message if message.startswith(field) else f"{field}: {message}")
        raise UsageError("; ".join(problems)) from None


def http_protocol():
    """uvicorn's httptools protocol with the header limit; h11 where httptools is missing."""
    try:
        from tastemaker.serving.http import LimitedHttpToolsProtocol
    except ImportError:
        return "h11"
    return LimitedHttpToolsProtocol


def single_threaded_libraries() -> None:
    """One thread per call inside OpenMP and BLAS: the server already runs requests in
    parallel, and per-call thread teams (implicit's fold-in, faiss, numpy) only fight over the
    cores with them (an implicit fold-in took 37 ms instead of 1 ms on a busy 2-core machine).
    OpenMP reads its variable when first loaded, which is later, with the model; BLAS is
    already loaded and is limited in place. Worker processes inherit both."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    import tastemaker.threads as threads

    threads.pin(int(os.environ["OPENBLAS_NUM_THREADS"]))


SERVE_HELP = (
    "Serve recommendations over HTTP: a web page at /, API docs at /docs.\n\n"
    "Other settings come from TASTEMAKER_* environment variables: TASTEMAKER_ADMIN_TOKEN "
    "(at least 32 characters) turns on POST /v1/admin/reload, TASTEMAKER_ANN_THRESHOLD is the "
    "catalogue size from which factor models are served from an approximate index "
    "(docs/serving.md lists them all)."
)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the app."""
    app.command(help=SERVE_HELP)(serve)
