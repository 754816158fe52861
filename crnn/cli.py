"""The `crnn` command (also `python -m crnn`)."""
import argparse
import importlib
import sys

# subcommand modules; each has add_parser(subparsers), which sets `func`
COMMANDS = ["crnn.verify", "crnn.golden", "crnn.demos"]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="crnn", description="crnn: a reference implementation of Elman RNNs.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    args = parser.parse_args(argv)
    if args.version:
        import crnn

        print(f"crnn {crnn.__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
