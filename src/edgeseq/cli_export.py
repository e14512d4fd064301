"""`edgeseq export` (the built-in models, or your own Keras file with --keras) and `edgeseq quantize`."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeseq.cli_output import (
    EXPORTED,
    RichProgress,
    choice,
    export_summary,
    floats,
    user_errors,
    variant_summary,
)
from edgeseq.cli_run import names
from edgeseq.errors import BadInputError, EdgeseqError


def export(
    ctx: typer.Context,
    model: str = typer.Option(
        "all",
        "--model",
        parser=choice("all", "letter_rnn", "sensor_lstm"),
        metavar="all|letter_rnn|sensor_lstm",
        help="Which built-in model to build.",
    ),
    out: Path = typer.Option(EXPORTED, "--out", metavar="DIR", help="Directory the artifacts are written to."),
    retrain: bool = typer.Option(False, "--retrain", help="Train again even if a Keras model exists in --out."),
    opset: int = typer.Option(17, "--opset", min=17, metavar="N", help="ONNX opset to convert to."),
    allow_unfused: bool = typer.Option(
        False, "--allow-unfused", help="Warn instead of failing when a recurrent layer stays a Loop/Scan."
    ),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        metavar="MODES",
        help="Also write these variants: comma-separated dynamic-int8, static-int8, fp16.",
    ),
    keras: Path | None = typer.Option(
        None,
        "--keras",
        metavar="FILE",
        help="Export this Keras model instead: a Keras 3 .keras file, a tf.keras 2 .keras or .h5 file, or a "
        "SavedModel directory written by tf.keras.",
    ),
    features: str | None = typer.Option(
        None, "--features", metavar="NAMES", help="With --keras: the CSV columns the model reads, in its order."
    ),
    window: int | None = typer.Option(
        None, "--window", min=1, metavar="T", help="With --keras: rows per window, when the model's time axis is open."
    ),
    name: str | None = typer.Option(
        None, "--name", metavar="NAME", help="With --keras: artifact name (default: the file's stem)."
    ),
    sample: Path | None = typer.Option(
        None,
        "--sample",
        metavar="FILE",
        help="With --keras: a CSV with the features; parity is checked on its windows.",
    ),
    mean: str | None = typer.Option(
        None,
        "--mean",
        metavar="NUMBERS",
        help="With --keras: per-feature means the model was trained with (with --std).",
    ),
    std: str | None = typer.Option(
        None,
        "--std",
        metavar="NUMBERS",
        help="With --keras: per-feature standard deviations, input = (x - mean) / std.",
    ),
    labels: str | None = typer.Option(
        None,
        "--labels",
        metavar="NAMES",
        help="With --keras: a classifier, one label per output (records give label, probability).",
    ),
    target: str | None = typer.Option(
        None,
        "--target",
        metavar="NAMES",
        help="With --keras: a regressor, one name per output (records give prediction).",
    ),
    time_column: str | None = typer.Option(
        None, "--time-column", metavar="NAME", help="With --keras: a column echoed as time in each record."
    ),
    sign_key: Path | None = typer.Option(
        None,
        "--sign-key",
        metavar="KEY",
        help="Sign each exported model (and its variants) as the last step, as edgeseq sign --key does.",
    ),
) -> None:
    """Convert Keras models to ONNX, check parity, and write the artifacts.

    Without --keras: trains (when no Keras model exists in --out, or with --retrain) and exports the built-in
    letter RNN (letter_rnn) and LSTM sensor forecaster (sensor_lstm), or one of them with --model. Writes
    <name>.keras, <name>.onnx and the JSON manifest <name>.json to --out; for the forecaster also the loss and
    forecast plots and sensor.csv, the test period of the data for `edgeseq run`. Beside each ONNX file (and
    each variant --quantize writes) goes its batched companion <name>.batched.onnx: the same graph with a
    dynamic batch axis, checked against the file on the parity windows at batches of 1 to 256 and listed in
    the manifest (or, for a graph that cannot take a batch, the manifest says why).

    With --keras FILE --features NAMES: exports your own model. It is loaded with the Keras that wrote it
    (Keras 3 or tf.keras 2), every LSTM, GRU, SimpleRNN and Bidirectional layer is written as one fused ONNX
    node, and onnxruntime is checked against that Keras on the windows of --sample (else on 500 random
    windows). Writes <name>.onnx and <name>.json, which `edgeseq run --model` streams.

    Files are moved into place only after conversion, the ONNX checker, the fusion audit and the
    Keras-vs-onnxruntime parity check have all passed. Needs the training extra: pip install 'edgeseq[train]'
    (from a clone: pip install '.[train]'). With --sign-key, the key is checked before anything is trained or
    converted, and each model is signed once all its files are written (the 'sign' extra).
    """
    progress = RichProgress()
    with user_errors():
        from edgeseq.quantize import parse_modes
        from edgeseq.quantize import quantize as make_variants

        if sign_key is not None:
            from edgeseq.sign import ready_to_sign

            ready_to_sign(sign_key)  # before minutes of work, not after

        try:
            modes = parse_modes(quantize) if quantize else []
        except EdgeseqError as exc:
            raise typer.BadParameter(str(exc), param_hint="--quantize") from None
        byo = {
            "--features": features, "--window": window, "--name": name, "--sample": sample, "--mean": mean,
            "--std": std, "--labels": labels, "--target": target, "--time-column": time_column,
        }  # fmt: skip
        if keras is None:
            given = [option for option, value in byo.items() if value is not None]
            if given:
                raise BadInputError(f"{', '.join(given)}: only with --keras FILE (your own model)")
            results = _export_builtin(model, out, retrain, opset, allow_unfused, progress)
        else:
            source = ctx.get_parameter_source("model")
            if (source is not None and source.name != "DEFAULT") or retrain:
                raise BadInputError("--model and --retrain are for the built-in models, not with --keras")
            if not features:
                raise BadInputError("--keras needs --features: the CSV columns the model reads, in its order")
            for option, value in (("--labels", labels), ("--target", target), ("--features", features)):
                if value is not None and not names(value):
                    raise BadInputError(f"{option} is empty: give comma-separated names")
            if (mean is None) != (std is None):
                raise BadInputError(
                    f"{'--mean' if std is None else '--std'} needs {'--std' if std is None else '--mean'}: "
                    "the model's input is (x - mean) / std, so give both, one value per feature, or neither"
                )
            if "static-int8" in modes and sample is None:
                raise BadInputError(
                    "--quantize static-int8 calibrates on real windows: give --sample FILE, or use dynamic-int8 or fp16"
                )
            from edgeseq.export import export_keras

            try:
                result = export_keras(
                    keras, features=names(features), window=window, name=name, out_dir=out, sample=sample,
                    mean=floats(mean, "--mean"), std=floats(std, "--std"),
                    labels=names(labels) if labels else None, targets=names(target) if target else None,
                    time_column=time_column, opset=opset, allow_unfused=allow_unfused, progress=progress,
                    quantize=tuple(modes),
                )  # fmt: skip
            finally:
                progress.close()
            typer.echo(export_summary(result))
            results = [result]
        variants: list[Path] = []
        for result in results:
            if modes:
                variants += make_variants(result.onnx_path, modes, progress=progress, report=False)
        if modes or (out / "quantization.json").exists():
            from edgeseq.quant_report import write_report

            progress.step("measuring every variant for quantization.json")
            report = write_report(out)
            for model_name, reason in report.get("not_measured", {}).items():
                progress.step(f"warning: {model_name} not measured again: {reason}")
        for variant in variants:
            typer.echo(variant_summary(variant))
        if sign_key is not None:
            from edgeseq.sign import sign_model

            for result in results:
                typer.echo(str(sign_model(result.onnx_path, sign_key)))


def _export_builtin(
    model: str, out: Path, retrain: bool, opset: int, allow_unfused: bool, progress: RichProgress
) -> list:
    from edgeseq.export import export_forecaster, export_letter_rnn

    recipes = {"letter_rnn": export_letter_rnn, "sensor_lstm": export_forecaster}
    chosen = list(recipes) if model == "all" else [model]
    results = []
    for name in chosen:
        try:
            result = recipes[name](out, retrain=retrain, opset=opset, progress=progress, allow_unfused=allow_unfused)
        finally:
            progress.close()
        typer.echo(export_summary(result))
        results.append(result)
    return results


def quantize_command(
    model: Path = typer.Option(
        EXPORTED / "sensor_lstm.onnx", "--model", metavar="FILE", help="An fp32 ONNX file exported by edgeseq."
    ),
    mode: str = typer.Option(
        ..., "--mode", metavar="MODES", help="dynamic-int8, static-int8 or fp16 (comma-separate several)."
    ),
    calibration_method: str = typer.Option(
        "MinMax", "--calibration-method", metavar="METHOD", help="static-int8: MinMax, Entropy, Percentile."
    ),
    calibration_windows: int = typer.Option(
        1000, "--calibration-windows", min=1, metavar="N", help="static-int8: real training windows to calibrate on."
    ),
    sign_key: Path | None = typer.Option(
        None,
        "--sign-key",
        metavar="KEY",
        help="Sign the model again once its variants are written (new files invalidate its signature).",
    ),
) -> None:
    """Write smaller variants of an exported model and report what each costs in accuracy.

    Each variant is written as <name>.<mode>.onnx beside the fp32 file and listed in its manifest with its
    sha256, size and figures: dynamic-int8 (weights int8, LSTMs as DynamicQuantizeLSTM), static-int8 (QDQ,
    calibrated on real training windows, never random data), fp16 (float32 inputs and outputs kept), each with
    its batched companion <name>.<mode>.batched.onnx. Then every variant in the directory is measured from its
    file (task accuracy, difference from fp32, latency) into quantization.json. Needs the training extra.
    """
    progress = RichProgress()
    with user_errors():
        from edgeseq.quantize import QuantizeConfig, parse_modes
        from edgeseq.quantize import quantize as make_variants

        if sign_key is not None:
            from edgeseq.sign import ready_to_sign

            ready_to_sign(sign_key)  # before minutes of work, not after

        try:
            modes = parse_modes(mode)
        except EdgeseqError as exc:
            raise typer.BadParameter(str(exc), param_hint="--mode") from None
        config = QuantizeConfig(calibration_method, calibration_windows)
        try:
            variants = make_variants(model, modes, config, progress=progress)
        finally:
            progress.close()
        for variant in variants:
            typer.echo(variant_summary(variant))
        if sign_key is not None:
            from edgeseq.sign import sign_model

            typer.echo(str(sign_model(model, sign_key)))
