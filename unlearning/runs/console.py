"""Nothing a command-line run prints carries a key: its stdout and stderr write ``***`` for key-shaped values.

A key pasted on the command line (``eval.judge.api_key_env=sk-...``) is refused by the settings and never written
to a file, but Hydra prints it before the toolkit is asked: "Error executing job with overrides: [...]" when a run
fails, the override itself in its own errors ("Could not find 'benchmark/sk-...'"), the traceback under
``HYDRA_FULL_ERROR=1``; and nohup or SLURM keep that output in a log. Redaction is done on the streams rather than
elsewhere because:

- rewriting ``sys.argv`` before Hydra parses it would change what runs (a model path such as ``/models/hf_Llava-
  Phi3-Mini`` is key-shaped too), and the refusal would then name a placeholder instead of the user's mistake;
- Hydra prints from several places (its override parser, the config loader, ``JobReturn``, ``run_and_report``);
  wrapping one of them leaves the others, and a logging filter sees none of them, since Hydra writes to
  ``sys.stderr`` directly;
- the streams see everything the process prints in Python: Hydra, logging, warnings, tqdm and the interpreter's
  final traceback.

Every entry point is declared with ``hydra_app`` (``hydra.main`` whose app calls ``redact_console`` before Hydra
reads its command line). What is redacted: values shaped like a provider's
key (``unlearning.runs.io.SECRET_VALUE``), the values given on the command line to settings named like a secret
(``...api_key=``, ``...token=``) or to a ``..._env`` setting that are not a variable name (a pasted key of another
shape), and the values of the environment's secret-named variables (``OPENAI_API_KEY``). Output written straight
to the file descriptors (C extensions, child processes) is not seen; those do not echo the command line, except
``accelerate launch``, which the launchers run through ``unlearning.runs.redacted``. A value split across two
``write`` calls would pass; Python's printing, logging and tracebacks write a value whole.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from unlearning.runs.io import SECRET_KEY, SECRET_VALUE

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MIN_SECRET = 8  # shorter values given to secret-named settings are not keys; replacing them would garble output


def variable_name(value: object) -> bool:
    """Whether ``value`` reads as the *name* of an environment variable, not as a key pasted in its place (a long
    run of letters and digits without an underscore is taken for a key)."""
    return isinstance(value, str) and bool(ENV_NAME.fullmatch(value)) and not (len(value) >= 20 and "_" not in value)


def command_line_secrets(arguments: Iterable[str]) -> list[str]:
    """The values of Hydra overrides that may be keys: given to a secret-named setting, or to a ``..._env``
    setting while not being a variable name."""
    secrets = []
    for argument in arguments:
        key, equals, value = argument.partition("=")
        setting = key.lstrip("+~").rsplit(".", 1)[-1]
        value = value.strip("'\"")
        if equals and len(value) >= MIN_SECRET and (
                SECRET_KEY.search(setting) or (setting.endswith("_env") and not variable_name(value))):
            secrets.append(value)
    return secrets


def environment_secrets() -> list[str]:
    """The values of the environment's secret-named variables (``OPENAI_API_KEY``, ``HF_TOKEN``)."""
    return [value for name, value in os.environ.items() if SECRET_KEY.search(name) and len(value) >= MIN_SECRET]


class RedactingStream:
    """A text stream writing ``***`` in place of key-shaped values and of ``secrets``; everything else (flush,
    fileno, encoding, isatty) is the wrapped stream's."""

    def __init__(self, stream: TextIO, secrets: Sequence[str] = ()) -> None:
        self.stream = stream
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return SECRET_VALUE.sub("***", text)

    def write(self, text: str) -> int:
        self.stream.write(self.redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def redact_console(arguments: Sequence[str] | None = None) -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in ``RedactingStream`` for the rest of the process, with the secrets
    of ``arguments`` (the command line by default) and of the environment; calling it again updates them."""
    secrets = command_line_secrets(sys.argv[1:] if arguments is None else arguments) + environment_secrets()
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, RedactingStream):
            stream.secrets = RedactingStream(stream.stream, secrets).secrets
        elif stream is not None:
            setattr(sys, name, RedactingStream(stream, secrets))


def hydra_app(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``hydra.main`` for the toolkit's entry points: the app calls ``redact_console`` before Hydra reads its
    command line, so Hydra's own messages (its "Error executing job with overrides" line) are redacted too."""
    return _redacting(_hydra_main())(*args, **kwargs)


def _hydra_main() -> Callable[..., Any]:
    import hydra

    return hydra.main


def _redacting(hydra_main: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(hydra_main)
    def main(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        decorate = hydra_main(*args, **kwargs)

        def decorator(task: Callable[..., Any]) -> Callable[..., Any]:
            app = decorate(task)

            @functools.wraps(app)
            def run(*app_args: Any, **app_kwargs: Any) -> Any:
                redact_console()
                return app(*app_args, **app_kwargs)

            run.redacts_console = True  # type: ignore[attr-defined]
            return run

        return decorator

    main.redacts_console = True  # type: ignore[attr-defined]
    return main
