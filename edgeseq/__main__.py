"""The `edgeseq` command's entry point (and `python -m edgeseq`).

Ctrl-C at any moment ends with "edgeseq: interrupted" and exit code 130, never a traceback: while the CLI's
modules are imported, while typer builds the command, and inside a command. `edgeseq run` installs its own
handlers while it streams, so that the record in hand is finished first.
"""

from edgeseq_device.interrupt import CtrlC


def main() -> None:
    with CtrlC("edgeseq") as ctrl_c:
        from edgeseq.cli import main as cli_main
        from edgeseq_device import runner  # noqa: F401 - numpy and onnxruntime, imported while SIGINT waits

        ctrl_c.armed()
        cli_main()


if __name__ == "__main__":
    main()
