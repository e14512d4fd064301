"""`edgeseq run` without typer, for start-up time: a plain, valid command line is parsed here and the runner
starts at once; anything else (--help, a bad or unknown option, a value typer would refuse) goes to typer,
whose messages are the CLI's. Typer costs about 0.1 s to start (it imports click and pydantic), a third of
the time to a first forecast. `run_options` is the one conversion from option values to RunOptions: both
paths call it, and tests/test_cli_run.py checks that they agree."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# option -> (RunOptions field, conversion raising ValueError); a value typer would refuse raises, and the
# command line then goes to typer. _REPEATED options gather their values in a list.
_FLAGS = {
    "--follow": "follow",
    "--mqtt-insecure": "mqtt_insecure",
    "--mqtt-plaintext-password": "mqtt_plaintext_password",
    "--score": "score",
}


def _at_least(low: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(f"{value} < {low}")
        return value

    return convert


def _choice(*choices: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in choices:
            raise ValueError(text)
        return text

    return convert


_VALUED: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--stream": ("stream", str),
    "--model": ("model", Path),
    "--stride": ("stride", _at_least(1)),
    "--format": ("fmt", _choice("jsonl", "csv")),
    "--output": ("output", str),  # a path, or an MQTT URL (a Path would fold its //)
    "--threads": ("threads", _at_least(1)),
    "--on-bad-row": ("on_bad_row", _choice("skip", "fail")),
    "--features": ("features", str),
    "--target": ("target", str),
    "--window": ("window", _at_least(2)),
    "--horizon": ("horizon", _at_least(1)),
    "--time-column": ("time_column", str),
    "--delimiter": ("delimiter", str),
    "--input-scale": ("input_scale", str),
    "--target-scale": ("target_scale", float),
    "--mqtt-credentials": ("mqtt_credentials", str),
    "--mqtt-ca": ("mqtt_ca", str),
    "--mqtt-cert": ("mqtt_cert", str),
    "--mqtt-key": ("mqtt_key", str),
    "--mqtt-client-id": ("mqtt_client_id", str),
    "--state": ("state", str),
    "--batch": ("batch", _at_least(1)),
    "--trust": ("trust", str),
    "--score-window": ("score_window", _at_least(1)),
    "--drift-factor": ("drift_factor", float),
    "--drift-after": ("drift_after", _at_least(1)),
    "--metrics": ("metrics", str),
    "--metrics-keys": ("metrics_keys", _at_least(1)),
}
_REPEATED = {"--trust"}


def names(text: str) -> tuple[str, ...]:
    """Comma-separated column names, blanks dropped."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


def run_options(
    *,
    stream: str,
    model: Path = Path("exported") / "sensor_lstm.onnx",
    follow: bool = False,
    stride: int = 1,
    fmt: str = "jsonl",
    output: str | None = None,
    threads: int = 1,
    on_bad_row: str = "skip",
    features: str | None = None,
    target: str | None = None,
    window: int | None = None,
    horizon: int | None = None,
    time_column: str | None = None,
    delimiter: str | None = None,
    input_scale: tuple[float, ...] | None = None,
    target_scale: float | None = None,
    mqtt_credentials: str | None = None,
    mqtt_ca: str | None = None,
    mqtt_cert: str | None = None,
    mqtt_key: str | None = None,
    mqtt_insecure: bool = False,
    mqtt_plaintext_password: bool = False,
    mqtt_client_id: str | None = None,
    mqtt_fields: Sequence[str] = (),
    state: str | None = None,
    batch: int | None = None,
    trust: Sequence[str] = (),
    score: bool = False,
    score_window: int = 288,
    drift_factor: float = 2.0,
    drift_after: int = 36,
    metrics: str | None = None,
    metrics_keys: int = 100,
) -> Any:
    """The runner's options from the command's values (the defaults are the CLI's)."""
    from edgeseq_device.runner import RunOptions

    return RunOptions(
        stream=stream,
        model=model,
        follow=follow,
        stride=stride,
        format=fmt,
        output=str(output) if output else None,
        threads=threads,
        on_bad_row=on_bad_row,
        features=names(features) if features else None,
        target=target,
        window=window,
        horizon=horizon,
        time_column=time_column,
        delimiter=delimiter,
        input_scale=input_scale,
        target_scale=target_scale,
        mqtt_credentials=mqtt_credentials,
        mqtt_ca=mqtt_ca,
        mqtt_cert=mqtt_cert,
        mqtt_key=mqtt_key,
        mqtt_insecure=mqtt_insecure,
        mqtt_plaintext_password=mqtt_plaintext_password,
        mqtt_client_id=mqtt_client_id,
        mqtt_fields=tuple(mqtt_fields),
        state=state,
        batch=batch,
        trust=tuple(trust),
        score=score,
        score_window=score_window,
        drift_factor=drift_factor,
        drift_after=drift_after,
        metrics=metrics,
        metrics_keys=metrics_keys,
    )


def parse(argv: Sequence[str]) -> Any | None:
    """RunOptions for the arguments after `run`, or None when typer should take them."""
    values: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _FLAGS:
            values[_FLAGS[arg]] = True
            i += 1
            continue
        name, eq, text = arg.partition("=")
        if name not in _VALUED:
            return None
        if not eq:
            if i + 1 >= len(argv):
                return None
            text = argv[i + 1]
            i += 1
        i += 1
        if not text or (text.startswith("-") and text != "-" and not _number(text)):
            return None  # an empty value, or an option where a value should be: typer says what it makes of it
        field, convert = _VALUED[name]
        try:
            value = convert(text)
        except ValueError:
            return None
        if name in _REPEATED:
            values.setdefault(field, []).append(value)
        else:
            values[field] = value
    if "stream" not in values:
        return None
    if "input_scale" in values:
        try:
            values["input_scale"] = tuple(float(v) for v in values["input_scale"].split(","))
        except ValueError:
            return None
    return run_options(**values)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
