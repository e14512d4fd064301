"""The `edgeseq` command's entry point (and `python -m edgeseq`).

Ctrl-C at any moment ends with "edgeseq: interrupted" and exit code 130, never a traceback: while the CLI's
modules are imported, while typer builds the command, and inside a command. `edgeseq run` installs its own
handlers while it streams, so that every record computed is written first.
"""

import sys

from edgeseq_device.interrupt import CtrlC


def main() -> None:
    with CtrlC("edgeseq") as ctrl_c:
        if sys.argv[1:2] == ["run"]:  # the streaming command starts without typer when its line is plain
            from edgeseq.cli_run import parse

            options = parse(sys.argv[2:])
            if options is not None:
                from edgeseq_device.runner import run_stream

                ctrl_c.armed()
                sys.exit(run_stream(options, sys.stdout, sys.stderr))
        from edgeseq.cli import main as cli_main
        from edgeseq_device import runner  # noqa: F401 - numpy and onnxruntime, imported while SIGINT waits

        ctrl_c.armed()
        cli_main()


if __name__ == "__main__":
    main()
