"""Serve a registered price model over HTTP, loading nothing the project did not write.

    python -m deployments.model_server --model models:/housing_price@champion --port 5001
                                                                      (make serve)

`mlflow models serve -m models:/...` reads the model's MLmodel and runs whatever loader it names,
so a tampered artifact (say, one naming MLflow's cloudpickle loader) would run its own code in
the server. This downloads the model once, checks it with the project's verifier
(steps/common/model_format.py: python_function flavor, the project's loader module, a skops file,
no code, no pickle) and only then starts `mlflow models serve` on that verified local copy, so
what is served is what was checked even if the registry changes meanwhile. A refused model exits
with code 5 and one line saying why, before any server starts. SIGINT and SIGTERM are passed on.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from steps.common.errors import StepError
from steps.common.model_format import downloaded_model

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model_server", description=__doc__)
    parser.add_argument("--model", required=True, help="e.g. models:/housing_price@champion")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    return parser


def serve_command(model_dir: Path, host: str, port: int) -> list[str]:
    """`mlflow models serve` on the verified copy, in this environment (the project's own)."""
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    return [
        mlflow_cli,
        "models",
        "serve",
        "-m",
        str(model_dir),
        "--env-manager",
        "local",
        "-h",
        host,
        "-p",
        str(port),
    ]


def serve(model_uri: str, host: str, port: int) -> int:
    """Verify, then run the server until it stops; its exit code."""
    with downloaded_model(model_uri) as model_dir:
        logger.info("model %s verified; serving it on http://%s:%d", model_uri, host, port)
        server = subprocess.Popen(serve_command(model_dir, host, port))

        def forward(signum: int, _frame: FrameType | None) -> None:
            server.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        return server.wait()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return serve(args.model, args.host, args.port)
    except StepError as error:
        logger.error("%s", error)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
