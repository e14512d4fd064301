"""The mutation check: plausible bugs, planted one at a time in a copy of the tree, each against the tests that
should catch it. A mutant the tests let through is a hole in the suite.

    python tests/mutants.py --json m.json          # every mutant; m.json lists each with "killed" and its tests
    python tests/mutants.py --only parity-self     # some of them, by name (repeat --only)
    python tests/mutants.py --list                 # the mutants, and whether each still finds its text

Run it before closing an issue that touches the modules below; it is not part of .ci/run. 49 mutants take 4 to
8 minutes on a 2-core machine (4.5 min while another test run shared it). Each mutant names a file, a text that
must occur in it exactly once (the check stops, naming the mutant, when the code has moved on: mutants cannot rot
in silence), its replacement, and the tests that should fail with it in.

The work tree is never changed: the tree is copied to a temporary folder, and the tests run there with
PYTHONPATH pointing at the copy's src/ and device/, ahead of the installed edgeseq (an editable or a wheel
install alike), which the child processes that tests start inherit. First a canary proves that the copy's code
is what runs, in pytest and in `python -m`; then the selected tests run once unmutated and must pass; then each
mutant runs, the copy restored after it. Exit status: 0 when every mutant was killed, 1 when one survived, 2 when
the check itself could not run.

Why named mutants and not mutmut or cosmic-ray (both on PyPI): they generate every operator swap in the files
given, hundreds here, many in messages or equivalent, each a run of tests that start TensorFlow; and they cannot
plant a bug that spans two lines (ridge-alpha-on-test) or adds a condition (stop-drops-run-records), nor keep a
name the issue that found it can refer to. These are the bugs a reviewer would plant, each run against the few
tests that should catch it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 600  # seconds per pytest run; a mutant that hangs the tests past it is killed
# Not copied: version control, environments, caches (.cache holds the arm64 sysroot and the npm packages)
NOT_COPIED = (".git", ".venv*", ".cache", "__pycache__", ".hypothesis", ".pytest_cache", ".ruff_cache", "*.egg-info")
CANARY = "edgeseq-mutants canary in {}"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest node ids: the tests that should fail


LIFECYCLE = "tests/test_runner_lifecycle.py"
STOP = "tests/test_runner_stop.py"
ZOO = "tests/test_convert_zoo.py::test_every_recurrent_layer_becomes_one_fused_node_with_parity"
QUANT = "tests/test_quantization.py"
BUNDLE = "tests/test_bundle.py"
GRID = "tests/test_time_grid.py"
REPORT = "tests/test_report.py"
BATCHED = "tests/test_batched.py"

MUTANTS = (
    # --- the device runtime ------------------------------------------------------------------------------------
    Mutant(
        "short-write-taken-as-whole",  # issue 27: a write a signal cut short is not carried on
        "device/edgeseq_device/sinks/fd.py",
        "done += os.write(self.fd, view[done:]) if self.regular else self._to_reader(view, done, ends)",
        "done = len(data) if (self.regular and os.write(self.fd, view[done:])) or self._to_reader(view, done, ends)"
        " else done",
        (f"{STOP}::test_a_write_cut_short_goes_on_from_where_it_stopped",),
    ),
    Mutant(
        "ctrl-c-while-leaving-raises",  # a SIGINT in the front end's last frame: a traceback after a finished run
        "device/edgeseq_device/interrupt.py",
        'if getattr(frame, "f_code", None) is _LEAVING:\n                return',
        'if getattr(frame, "f_code", None) is _LEAVING:\n                pass',
        (f"{LIFECYCLE}::test_ctrl_c_held_down_until_the_process_is_gone_is_never_a_traceback",),
    ),
    Mutant(
        "reader-gets-half-records",  # issue 27: PIPE_BUF pieces cut inside a record
        "device/edgeseq_device/sinks/fd.py",
        "end = ends[fits] if fits >= 0 and ends[fits] > done else done + select.PIPE_BUF",
        "end = done + select.PIPE_BUF",
        (f"{STOP}::test_a_reader_that_takes_nothing_after_a_stop_does_not_hold_the_run",),
    ),
    Mutant(
        "full-disk-leaves-half-record",  # issue 27: a regular file not cut back to its last whole record
        "device/edgeseq_device/sinks/fd.py",
        "                os.ftruncate(self.fd, start + kept)\n",
        "",
        ("tests/test_runner_flush.py::test_a_full_disk_is_reported_and_the_file_keeps_only_whole_records_all_counted",),
    ),
    Mutant(
        "fifo-last-line-waits-for-next-writer",  # issue 27: the FIFO reopened before its last line is used
        "device/edgeseq_device/sources/lines.py",
        '            self.close()\n            return "the FIFO\'s writer closed it; reading the next writer"',
        "            self.close()\n            self._open()\n"
        '            return "the FIFO\'s writer closed it; reading the next writer"',
        (f"{STOP}::test_a_fifos_last_line_without_a_line_break_is_used_when_stopped",),
    ),
    Mutant(
        "key-length-unbounded",  # issue 27: 300 keys of 1 MB each held in memory
        "device/edgeseq_device/series/router.py",
        "if len(key) > MAX_KEY_CHARS:",
        "if False:",
        ("tests/test_series_rules.py::test_300_keys_of_a_megabyte_each_stay_in_bounded_memory",),
    ),
    Mutant(
        "bad-value-row-keeps-the-clock",  # issue 27: a non-numeric row is a gap in time, a missing value is not
        "device/edgeseq_device/series/router.py",
        "                    exc.time_gap = series.clock(self._time_of(parser, fields))\n",
        "                    pass\n",
        ("tests/test_series_rules.py::test_a_row_dropped_for_its_values_is_the_gap_and_its_time_moves_the_clock",),
    ),
    Mutant(
        "model-failing-every-window-goes-on",  # issue 27: a model that fails on every window never stops the run
        "device/edgeseq_device/reads.py",
        "if self.fail or self.failures_in_a_row >= MODEL_FAILURES_IN_A_ROW:",
        "if self.fail:",
        (f"{STOP}::test_a_model_that_fails_on_every_window_stops_the_run_with_exit_1",),
    ),
    Mutant(
        "stop-drops-run-records",  # issue 29: a stop signal loses the records of the windows already run
        "device/edgeseq_device/reads.py",
        "forecasts)\n        if records:\n",
        "forecasts)\n        if records and self.stop.received is None:\n",
        (f"{LIFECYCLE}::test_a_stop_signal_during_a_model_call_still_writes_every_window_that_ran",),
    ),
    Mutant(
        "row-path-first-window-late",
        "device/edgeseq_device/window.py",
        "return extra >= 0 and extra % self.stride == 0, text",
        "return extra > 0 and extra % self.stride == 0, text",
        ("tests/test_bulk.py::test_a_run_gives_the_same_records_and_messages_with_and_without_the_fast_path",),
    ),
    Mutant(
        "fast-path-first-window-late",
        "device/edgeseq_device/window.py",
        "due = np.flatnonzero((filled >= window) & ((filled - window) % self.stride == 0))",
        "due = np.flatnonzero((filled > window) & ((filled - window) % self.stride == 0))",
        ("tests/test_runner.py::test_one_record_per_window_with_row_time_prediction",),
    ),
    Mutant(
        "state-copied-backwards",
        "device/edgeseq_device/window.py",
        "                np.copyto(state_in, state_out)\n",
        "                np.copyto(state_out, state_in)\n",
        ("tests/test_export_stateful.py::test_the_runner_carries_the_state_as_keras_steps_through_the_rows",),
    ),
    Mutant(
        "time-gap-keeps-state",
        "device/edgeseq_device/window.py",
        "flags & (TIME_GAP | JUMPED):  # a new segment: the state starts afresh\n            self._zero_states()\n",
        "flags & (TIME_GAP | JUMPED):\n            pass\n",
        ("tests/test_export_stateful.py::test_a_gap_in_time_resets_the_state_as_a_fresh_start_would",),
    ),
    Mutant(
        "record-transform-subtracts",
        "device/edgeseq_device/forecast.py",
        "return (float(rows[-1, self.target_index]) + self.target_scale * float(output[0, 0]),)",
        "return (float(rows[-1, self.target_index]) - self.target_scale * float(output[0, 0]),)",
        (
            "tests/test_forecast_data.py::test_the_runners_record_and_the_evaluation_transform_are_the_manifests_formula",
        ),
    ),
    Mutant(
        "window-relative-to-first-row",
        "device/edgeseq_device/forecast.py",
        "relative = np.subtract(rows, rows[-1], out=scratch)",
        "relative = np.subtract(rows, rows[0], out=scratch)",
        ("tests/test_runner.py::test_golden_runner_equals_keras_and_the_manifests_formulas_on_every_window",),
    ),
    Mutant(
        "missing-token-na-dropped",
        "device/edgeseq_device/rows.py",
        'MISSING_TOKENS = ("", "NA", "N/A",',
        'MISSING_TOKENS = ("", "N/A",',
        (
            "tests/test_series_rules.py::test_every_missing_token_in_any_case_and_padding_is_a_missing_value",
            "tests/test_series_rules.py::test_a_field_is_a_number_a_missing_value_or_a_bad_row",
        ),
    ),
    Mutant(
        "fast-path-always-declines",
        "device/edgeseq_device/bulk.py",
        "        fields = split_plain(lines, self.width, self.delimiter)\n",
        "        fields = None\n",
        ("tests/test_bulk.py::test_a_plain_block_reads_as_the_row_path_reads_it",),
    ),
    Mutant(
        "fast-unix-milliseconds-unscaled",
        "device/edgeseq_device/times.py",
        "seconds = np.fromiter(map(float, texts), np.float64, len(texts)) * scale",
        "seconds = np.fromiter(map(float, texts), np.float64, len(texts))",
        ("tests/test_bulk.py::test_many_unix_times_are_parse_time_or_declined",),
    ),
    # --- the converter -----------------------------------------------------------------------------------------
    Mutant(
        "lstm-gate-order",
        "src/edgeseq/convert/lstm.py",
        'KERAS_GATES, ONNX_GATES = "ifco", "iofc"',
        'KERAS_GATES, ONNX_GATES = "ifco", "ifoc"',
        (f"{ZOO}[lstm-keras3]",),
    ),
    Mutant(
        "lstm-bias-in-keras-gate-order",
        "src/edgeseq/convert/lstm.py",
        "B=np.concatenate([reorder(bias, units, KERAS_GATES, ONNX_GATES), np.zeros(4 * units, np.float32)]),",
        "B=np.concatenate([bias, np.zeros(4 * units, np.float32)]),",
        (f"{ZOO}[lstm-keras3]",),
    ),
    Mutant(
        "gru-linear-before-reset-flipped",
        "src/edgeseq/convert/gru.py",
        'attributes={"linear_before_reset": int(reset_after)}',
        'attributes={"linear_before_reset": int(not reset_after)}',
        (f"{ZOO}[gru_reset_after-keras3]",),
    ),
    Mutant(
        "gru-input-and-recurrent-biases-swapped",  # they differ only where the reset gate multiplies Rb (reset_after)
        "src/edgeseq/convert/gru.py",
        "onnx_bias = bias.reshape(-1)",
        "onnx_bias = bias[::-1].reshape(-1)",
        (f"{ZOO}[gru_reset_after-keras3]",),
    ),
    Mutant(
        "hard-sigmoid-keras3-as-keras2",
        "src/edgeseq/convert/flavours.py",
        'KERAS3: {**_COMMON, "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5)}',
        'KERAS3: {**_COMMON, "hard_sigmoid": ("HardSigmoid", 0.2, 0.5)}',
        ("tests/test_convert_zoo.py::test_hard_sigmoid_is_each_keras_own[keras3]",),
    ),
    Mutant(
        "rnn-recurrent-kernel-untransposed",
        "src/edgeseq/convert/simple_rnn.py",
        "R=recurrent.T,",
        "R=recurrent,",
        (f"{ZOO}[simple_rnn_softmax-keras3]",),
    ),
    Mutant(
        "parity-bar-1000x-loose",
        "src/edgeseq/convert/parity.py",
        "if not max_abs <= atol:",
        "if not max_abs <= atol * 1000:",
        ("tests/test_train_forecaster_cli.py::test_a_file_that_misses_parity_is_refused_and_nothing_is_written",),
    ),
    Mutant(
        "pre-processing-multiplies-by-the-scale",
        "src/edgeseq/convert/pre_post.py",
        '_node("pre", "Div", [p + "relative", p + "input_scale"], p + "scaled"),',
        '_node("pre", "Mul", [p + "relative", p + "input_scale"], p + "scaled"),',
        ("tests/test_pre_post.py::test_pre_processing_in_the_graph_is_bit_for_bit_numpys",),
    ),
    # --- export and training -----------------------------------------------------------------------------------
    Mutant(
        "parity-self",  # issue 29: the forecaster's export parity compares the ONNX output with itself
        "src/edgeseq/export/forecaster.py",
        "            keras_forecast[:, None],\n",
        "            model_forecast[:, None],\n",
        (
            "tests/test_train_forecaster_cli.py::test_a_file_that_misses_parity_is_refused_and_nothing_is_written",
            "tests/test_train_forecaster_cli.py::test_byo_csv_trains_exports_and_verifies",
        ),
    ),
    Mutant(
        "test-sample-from-validation",
        "src/edgeseq/export/forecaster.py",
        "if part != 2 or header_again:",
        "if part != 1 or header_again:",
        ("tests/test_messy_files.py::test_a_header_in_another_part_still_heads_the_test_sample",),
    ),
    Mutant(
        "forecast-plot-draws-actual-as-the-lstm",
        "src/edgeseq/plots.py",
        'ax.plot(x, series[1], color="tab:blue"',
        'ax.plot(x, series[0], color="tab:blue"',
        ("tests/test_plots.py::test_forecast_png_is_written_with_its_three_lines_and_axes_that_span_them",),
    ),
    Mutant(
        "scaling-fitted-on-test",
        "src/edgeseq/train.py",
        'table.values, ends["train"], features, config.target',
        'table.values, ends["test"], features, config.target',
        ("tests/test_forecast_data.py::test_scaling_does_not_see_the_validation_or_test_part",),
    ),
    # --- quantization ------------------------------------------------------------------------------------------
    Mutant(
        "quant-report-fp32",  # issue 29: every variant's RMSE computed from the fp32 output
        "src/edgeseq/quant_report.py",
        'forecast = inputs["spec"].forecasts(out, data.last_target("test"))',
        'forecast = inputs["spec"].forecasts(fp32_out, data.last_target("test"))',
        (f"{QUANT}::test_the_forecasters_figures_are_what_onnxruntime_and_numpy_measure_on_each_file",),
    ),
    Mutant(
        "quant-bar-loose",  # issue 29: the dynamic-int8 bars loosened, 1.02 -> 1.5 and 0.30 -> 3.0
        "src/edgeseq/quant_report.py",
        'return figures["test_rmse"] <= 1.02 * fp32["test_rmse"] and figures["size_ratio"] <= 0.30',
        'return figures["test_rmse"] <= 1.5 * fp32["test_rmse"] and figures["size_ratio"] <= 3.0',
        (
            f"{QUANT}::test_the_dynamic_int8_bar_is_2_percent_of_fp32s_rmse_and_30_percent_of_its_size",
            f"{QUANT}::test_a_dynamic_int8_variant_that_misses_a_bar_is_reported_as_missing_it",
        ),
    ),
    Mutant(
        "quant-size-ratio-of-itself",
        "src/edgeseq/quant_report.py",
        'figures["size_ratio"] = figures["size"] / fp32_path.stat().st_size',
        'figures["size_ratio"] = figures["size"] / model.path.stat().st_size',
        (f"{QUANT}::test_the_forecasters_figures_are_what_onnxruntime_and_numpy_measure_on_each_file",),
    ),
    Mutant(
        "variant-listed-with-the-fp32-hash",
        "src/edgeseq/quantize.py",
        "entry = file_entry(variant)",
        "entry = file_entry(model_path)",
        (f"{QUANT}::test_quantize_command_writes_a_variant_and_lists_it",),
    ),
    Mutant(
        "fp16-inputs-and-outputs-halved",
        "src/edgeseq/quantize.py",
        "onnx.load(str(model_input)), keep_io_types=True), str(model_output))",
        "onnx.load(str(model_input)), keep_io_types=False), str(model_output))",
        (f"{QUANT}::test_quantize_command_writes_a_variant_and_lists_it",),
    ),
    # --- evaluation --------------------------------------------------------------------------------------------
    Mutant(
        "ridge-alpha-on-test",  # issue 29: ridge's alpha chosen on the test split
        "src/edgeseq/evaluate.py",
        '_design(data, "validation") @ weights, data.last_target("validation"))\n'
        '        score = rmse(forecast, data.actual("validation"))',
        '_design(data, "test") @ weights, data.last_target("test"))\n'
        '        score = rmse(forecast, data.actual("test"))',
        (
            "tests/test_evaluate.py::test_ridge_chooses_alpha_on_validation_although_the_test_split_would_choose_another",
            "tests/test_evaluate.py::test_the_test_split_does_not_move_the_choice",
        ),
    ),
    Mutant(
        "ridge-intercept-shrunk",
        "src/edgeseq/evaluate.py",
        "penalty[-1, -1] = 0.0  # the intercept is not shrunk",
        "penalty[-1, -1] = alpha  # the intercept is not shrunk",
        (
            "tests/test_evaluate.py::test_ridge_chooses_alpha_on_validation_although_the_test_split_would_choose_another",
        ),
    ),
    Mutant(
        "rmse-is-mae",
        "src/edgeseq/evaluate.py",
        "return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(actual)) ** 2)))",
        "return float(np.mean(np.abs(np.asarray(predicted) - np.asarray(actual))))",
        ("tests/test_evaluate.py::test_rmse_and_mae_are_their_formulas",),
    ),
    Mutant(
        "persistence-sees-the-answer",
        "src/edgeseq/evaluate.py",
        "    return data.last_target(part)\n",
        "    return data.actual(part)\n",
        ("tests/test_evaluate.py::test_persistence_is_the_last_observed_target",),
    ),
    Mutant(
        "split-boundary-on-the-left",
        "src/edgeseq/data/split.py",
        'parts[ok] = np.searchsorted(np.asarray(cuts), times[ok], side="right")',
        'parts[ok] = np.searchsorted(np.asarray(cuts), times[ok], side="left")',
        ("tests/test_forecast_data.py::test_splits_are_by_time_across_keys_and_cover_every_line",),
    ),
    # --- the bundle --------------------------------------------------------------------------------------------
    Mutant(
        "wheel-not-in-sums",  # issue 29: the bundle's wheels left out of SHA256SUMS
        "src/edgeseq/bundle/__init__.py",
        'if path.is_file() and path.name != "SHA256SUMS"\n',
        'if path.is_file() and path.name != "SHA256SUMS" and path.parent.name != "wheels"\n',
        (f"{BUNDLE}::test_sha256sums_lists_every_file_of_the_bundle_with_the_hash_of_its_bytes",),
    ),
    Mutant(
        "smoke-rows-one-short",
        "src/edgeseq/bundle/__init__.py",
        'smoke.write_text("".join(f"{line}\\n" for line in lines[: last + 1]), encoding="utf-8")',
        'smoke.write_text("".join(f"{line}\\n" for line in lines[:last]), encoding="utf-8")',
        (f"{BUNDLE}::test_the_smoke_rows_are_as_many_as_the_first_five_forecasts_need",),
    ),
    Mutant(
        "bundle-into-a-full-folder",
        "src/edgeseq/bundle/__init__.py",
        "if out.exists() and (tarball or not out.is_dir() or any(out.iterdir())):",
        "if out.exists() and (tarball or not out.is_dir()):",
        (f"{BUNDLE}::test_bundle_refusals_are_one_line_each",),
    ),
    Mutant(
        "install-ignores-bad-sums",
        "src/edgeseq/bundle/scripts.py",
        "sys.exit(1 if problems else 0)",
        "sys.exit(0)",
        (f"{BUNDLE}::test_a_changed_file_is_refused_by_install_sh",),
    ),
    Mutant(
        "install-takes-unlisted-files",  # issue 27: a wheel dropped into wheels/ was installed and run as root
        "src/edgeseq/bundle/scripts.py",
        "        if name not in listed:\n",
        "        if False:\n",
        (f"{BUNDLE}::test_an_unlisted_wheel_is_refused_and_never_installed_or_run",),
    ),
    Mutant(
        "requirements-without-hashes",  # issue 27: pip resolves pins, not the files' digests
        "src/edgeseq/bundle/__init__.py",
        "{release} --hash=sha256:{sha256_of(wheel.read_bytes())}",
        "{release}",
        (f"{BUNDLE}::test_pip_installs_only_the_pinned_hashes",),
    ),
    Mutant(
        "root-install-from-a-shared-tree",  # issue 27: a tree others can write to installed as root
        "src/edgeseq/bundle/scripts.py",
        "        if info.st_uid != 0 or shared:\n",
        "        if False:\n",
        (f"{BUNDLE}::test_a_tree_others_can_write_to_is_refused_when_installing_as_root",),
    ),
    Mutant(
        "tarball-keeps-builders-owner",  # issue 27: files owned by the build machine's uid on the box
        "src/edgeseq/bundle/__init__.py",
        "    member.uid = member.gid = 0\n",
        "",
        (f"{BUNDLE}::test_the_tarball_is_roots_whoever_built_it_and_keeps_no_special_mode",),
    ),
    Mutant(
        "unit-runs-as-root",  # issue 27: the service with no hardening
        "src/edgeseq/bundle/scripts.py",
        "DynamicUser=yes\n",
        "",
        (f"{BUNDLE}::test_the_service_is_hardened_to_an_exposure_of_at_most_3_5",),
    ),
    Mutant(
        "unit-takes-sigint-status",
        "src/edgeseq/bundle/scripts.py",
        "SuccessExitStatus=143",
        "SuccessExitStatus=130",
        (f"{BUNDLE}::test_the_units_command_follows_a_file_and_sigterm_is_a_clean_stop",),
    ),
    # --- issue 24: batched companions -------------------------------------------------------------------------------
    Mutant(
        "converter-bakes-batch-1",  # the recurrent writers' Reshape written with the file's batch of 1
        "src/edgeseq/convert/recurrent.py",
        "_merged(out, mode, 1, [-1, first.units * count], targets)",
        "_merged(out, mode, 1, [1, first.units * count], targets)",
        (f"{BATCHED}::test_every_zoo_models_companion_matches_at_batch_7[lstm-keras3]",),
    ),
    Mutant(
        "reshape-left-at-batch-1",  # the transform leaves a Reshape's batch of 1 as it is
        "src/edgeseq/convert/batched.py",
        "if shape is None or shape.ndim != 1 or not len(shape) or shape[0] != 1:",
        "if shape is None or shape.ndim != 1 or not len(shape) or shape[0] != 7:",
        (f"{BATCHED}::test_a_reshape_that_fixes_batch_1_gets_minus_1_or_the_inputs_batch",),
    ),
    Mutant(
        "batch-axis-left-fixed",  # the companion's input and output keep their batch of 1
        "src/edgeseq/convert/batched.py",
        "value.type.tensor_type.shape.dim[0].dim_param = BATCH",
        "value.type.tensor_type.shape.dim[0].dim_value = 1",
        (
            f"{BATCHED}::test_a_companion_is_its_single_file_with_a_dynamic_batch_axis[sensor_lstm.onnx]",
            f"{BATCHED}::test_every_zoo_models_companion_matches_at_batch_7[lstm-keras3]",
        ),
    ),
    Mutant(
        "rows-not-compared",  # a float companion kept whatever its windows' outputs
        "src/edgeseq/convert/batched.py",
        'if not figures["max_abs_diff"] <= atol:',
        "if False:",
        (
            f"{BATCHED}::test_a_graph_that_mixes_windows_gets_no_companion",
            f"{BATCHED}::test_every_zoo_models_companion_matches_at_batch_7[sequence_head-tf_keras]",
        ),
    ),
    Mutant(
        "reordering-not-checked",  # a graph that mixes windows in a way copies and rows alone may not show
        "src/edgeseq/convert/batched.py",
        "if not reordered <= atol:",
        "if False:",
        (f"{BATCHED}::test_a_graph_that_mixes_windows_gets_no_companion",),
    ),
    Mutant(
        "any-file-may-be-batched",  # the runtime takes a dynamic batch axis from a file the manifest does not list
        "device/edgeseq_device/model.py",
        "companion = manifest.companion_of(path.name) is not None",
        "companion = True",
        (f"{BATCHED}::test_a_changed_companion_is_refused_and_an_unlisted_one_keeps_a_fixed_batch",),
    ),
    Mutant(
        "export-removes-its-companion",  # the new export's companion taken for a stale variant
        "src/edgeseq/export/artifacts.py",
        "if path.name not in written)",
        ")",
        (f"{BATCHED}::test_a_new_export_removes_the_old_variants_companions_and_keeps_its_own",),
    ),
    Mutant(
        "bundle-without-companions",
        "src/edgeseq/bundle/__init__.py",
        "            companions[model.name] = companion\n",
        "",
        (f"{BATCHED}::test_the_bundle_carries_each_models_companion",),
    ),
    Mutant(
        "keyed-fast-path-takes-a-read-slot",  # a keyed plain row pushed into a slot its series already read
        "device/edgeseq_device/series/sensor.py",
        "                if self.buffer.filled and slot != self.position + 1:\n                    return False\n",
        "",
        ("tests/test_bulk.py::test_a_keyed_stream_gives_the_same_records_and_messages_with_and_without_the_fast_path",),
    ),
    Mutant(
        "keyed-fast-path-takes-a-time-behind",  # a repeated reading pushed again by the keyed fast path
        "device/edgeseq_device/series/sensor.py",
        "if newest is not None and not (when > newest and (grid or when - newest <= self._max_step)):",
        "if newest is not None and not (grid or when - newest <= self._max_step):",
        ("tests/test_bulk.py::test_a_keyed_stream_gives_the_same_records_and_messages_with_and_without_the_fast_path",),
    ),
    Mutant(
        "grid-slots-not-centred",  # slots from the grid point up, so a reading a little early falls a slot back
        "device/edgeseq_device/series/rules.py",
        "return math.floor((when - self.grid_origin) / self.interval + 0.5)",
        "return math.floor((when - self.grid_origin) / self.interval)",
        (f"{GRID}::test_every_window_is_t_consecutive_grid_slots_of_first_readings",),
    ),
    Mutant(
        "grid-extra-reading-pushed",  # a second reading in a slot pushed as if it were the next slot's
        "device/edgeseq_device/series/sensor.py",
        "        if empty < 0:\n            return SLOT_TAKEN\n",
        "        if empty < 0:\n            return 0\n",
        (f"{GRID}::test_every_window_is_t_consecutive_grid_slots_of_first_readings",),
    ),
    Mutant(
        "grid-jump-loses-its-slot",  # a jump back in time leaves the slot unset: the next reading looks like a gap
        "device/edgeseq_device/series/sensor.py",
        "slot = self.rules.slot(when) if self._grid and when is not None else self.position + 1",
        "slot = 0",
        ("tests/test_typical_year.py::test_a_typical_year_trains_with_its_two_time_columns",),
    ),
    Mutant(
        "score-pairs-a-gap",  # a forecast whose segment ended paired with a reading after the gap
        "device/edgeseq_device/scoring.py",
        "while queue and (queue[0][1] != segment or queue[0][0] < position):",
        "while queue and queue[0][0] < position:",
        (
            f"{GRID}::test_pending_forecasts_and_figures_stay_bounded",
            f"{GRID}::test_scores_on_the_shipped_sample_reproduce_the_manifests_test_metrics",
        ),
    ),
    Mutant(
        "score-persistence-from-the-actual",  # persistence taken as the actual itself: its error 0
        "device/edgeseq_device/reads.py",
        "self.placed.append((series.position, series.segment, float(target)))",
        "self.placed.append((series.position, series.segment, 0.0))",
        (f"{GRID}::test_the_runner_forecasts_for_a_time_and_scores_each_forecast_with_the_reading_at_that_time",),
    ),
    Mutant(
        "report-rmse-without-sqrt",
        "src/edgeseq/report/figures.py",
        "return float(np.sqrt(np.mean(errors * errors)))",
        "return float(np.mean(errors * errors))",
        (f"{REPORT}::test_the_figures_in_the_page_are_the_ones_computed_from_the_records",),
    ),
    Mutant(
        "report-rolling-window-one-too-long",
        "src/edgeseq/report/figures.py",
        "start = np.maximum(end - window, 0)",
        "start = np.maximum(end - window - 1, 0)",
        (f"{REPORT}::test_rolling_rmse_is_the_rmse_of_the_last_n",),
    ),
    Mutant(
        "report-thinning-keeps-lows-only",
        "src/edgeseq/report/figures.py",
        "pairs = np.sort(np.stack([base + lows, base + highs], axis=1), axis=1).ravel()",
        "pairs = base + lows",
        (f"{REPORT}::test_thinning_keeps_each_runs_lowest_and_highest",),
    ),
)


def problems(mutants: tuple[Mutant, ...]) -> list[str]:
    """What keeps a mutant from being planted in the work tree's code as it is now."""
    found = []
    names = [m.name for m in mutants]
    found += [f"{name}: named twice" for name in sorted({n for n in names if names.count(n) > 1})]
    for mutant in mutants:
        path = REPO / mutant.path
        if not path.is_file():
            found.append(f"{mutant.name}: {mutant.path} is not there")
            continue
        count = path.read_text(encoding="utf-8").count(mutant.old)
        if count != 1:
            found.append(f"{mutant.name}: its text occurs {count} times in {mutant.path}, not once: update the mutant")
        if mutant.old == mutant.new or not mutant.tests:
            found.append(f"{mutant.name}: changes nothing or names no test")
    return found


def environment(copy: Path) -> dict[str, str]:
    """The copy's packages first, before any installed edgeseq; no bytecode written, so a file restored within
    the second it was changed is never run from a stale .pyc."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(copy / "src"), str(copy / "device")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_canary(copy: Path, env: dict[str, str]) -> None:
    """The copy's code is what pytest imports and what `python -m` runs, or the check stops."""
    where = subprocess.run(
        [sys.executable, "-c", "import edgeseq, edgeseq_device, tests.conftest as c; "
         "print(edgeseq.__file__, edgeseq_device.__file__, c.__file__, sep='\\n')"],
        cwd=copy, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    files = where.stdout.split()
    if where.returncode != 0 or len(files) != 3 or not all(Path(f).is_relative_to(copy) for f in files):
        raise SystemExit(f"mutants: the copy's packages are not the ones imported: {where.stdout}{where.stderr}")
    planted = {copy / "src/edgeseq/__init__.py": "edgeseq", copy / "device/edgeseq_device/__init__.py": "device"}
    originals = {path: path.read_text(encoding="utf-8") for path in planted}
    try:
        for path, label in planted.items():
            path.write_text(f"{originals[path]}raise SystemExit({CANARY.format(label)!r})\n", encoding="utf-8")
        for module, label in (("edgeseq", "edgeseq"), ("edgeseq_device", "device")):
            ran = subprocess.run(
                [sys.executable, "-m", module, "--help"], cwd=copy, env=env, capture_output=True, text=True, timeout=120
            )
            if CANARY.format(label) not in ran.stderr:
                raise SystemExit(f"mutants: a change to the copy does not reach `python -m {module}`: {ran.stderr}")
    finally:
        for path, text in originals.items():
            path.write_text(text, encoding="utf-8")


def run_tests(copy: Path, env: dict[str, str], tests: tuple[str, ...]) -> tuple[int | None, float, str]:
    """(pytest's exit status, or None after TIMEOUT; seconds; the summary lines of what failed)."""
    command = [
        sys.executable, "-m", "pytest", "-x", "-q", "--no-header", "-p", "no:cacheprovider", "-o", "addopts=",
        "-rfE", "--tb=no", "--hypothesis-seed=0", *tests,
    ]  # fmt: skip
    started = time.monotonic()
    try:
        proc = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started, f"timed out after {TIMEOUT} s"
    lines = proc.stdout.splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))] or lines[-3:]
    return proc.returncode, time.monotonic() - started, "\n".join(failed)


def plant(copy: Path, mutant: Mutant) -> tuple[Path, str]:
    path = copy / mutant.path
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace(mutant.old, mutant.new, 1), encoding="utf-8")
    return path, original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here: a list of {name, killed, tests, ...}")
    parser.add_argument("--only", action="append", metavar="NAME", help="run this mutant (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    args = parser.parse_args(argv)

    found = problems(MUTANTS)
    if args.list:
        for mutant in MUTANTS:
            print(f"{mutant.name:40} {mutant.path}")
        print("\n".join(found) or f"{len(MUTANTS)} mutants, each text found once")
        return 2 if found else 0
    if found:
        print("mutants: the code has moved on from these mutants:\n  " + "\n  ".join(found), file=sys.stderr)
        return 2
    chosen = MUTANTS
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTANTS})
        if unknown:
            print(f"mutants: no mutant named {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
        chosen = tuple(m for m in MUTANTS if m.name in args.only)

    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeseq-mutants-") as scratch:
        copy = Path(scratch) / REPO.name
        shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(*NOT_COPIED))
        env = environment(copy)
        check_canary(copy, env)
        print(f"canary: {copy} is what runs")
        every = tuple(dict.fromkeys(test for mutant in chosen for test in mutant.tests))
        code, seconds, failed = run_tests(copy, env, every)
        if code != 0:
            print(f"mutants: the selected tests fail without any mutant (exit {code}):\n{failed}", file=sys.stderr)
            return 2
        print(f"control: {len(every)} selections pass unmutated ({seconds:.0f} s)")
        for number, mutant in enumerate(chosen, start=1):
            path, original = plant(copy, mutant)
            try:
                code, seconds, failed = run_tests(copy, env, mutant.tests)
            finally:
                path.write_text(original, encoding="utf-8")
            outcome = {0: "survived", 1: "killed", None: "killed"}.get(code, f"error (pytest exit {code})")
            print(f"[{number:2}/{len(chosen)}] {mutant.name:40} {outcome:9} {seconds:5.1f} s")
            if code == 1:
                print("        " + failed.splitlines()[0][:300])
            elif code is not None:
                print("        " + "\n        ".join(failed.splitlines()[-3:]))
            results.append(
                {
                    "name": mutant.name,
                    "killed": outcome == "killed",
                    "tests": list(mutant.tests),
                    "outcome": outcome,
                    "file": mutant.path,
                    "seconds": round(seconds, 1),
                    "failed": failed.splitlines()[:5] if code != 0 else [],
                }
            )
    total = time.monotonic() - started
    killed = sum(r["killed"] for r in results)
    survived = [r["name"] for r in results if r["outcome"] == "survived"]
    errors = [r["name"] for r in results if r["outcome"].startswith("error")]
    print(
        f"{len(results)} mutants: {killed} killed, {len(survived)} survived"
        + (f" ({', '.join(survived)})" if survived else "")
        + (f", {len(errors)} could not run ({', '.join(errors)})" if errors else "")
        + f", in {total / 60:.1f} min"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 2 if errors else 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
