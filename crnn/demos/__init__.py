"""`crnn demo NAME` and `crnn sample MODEL`: applications of crnn, one file each.

    charlm     character-level language model on the standard library's own source
    adding     the adding problem: tanh RNN vs IRNN (ReLU, identity init)
    forecast   one-step and multi-step forecasting of yearly sunspot numbers
    classify   digit images read row by row, BiLayer many-to-one (scikit-learn)
    tag        sequence labelling that needs both sides: BiLayer vs Layer
    translate  sequence to sequence: dates in words to ISO dates
    gradients  vanishing and exploding gradients: |dh_T/dh_k| against k

Each demo takes --seed, --quick (seconds; what the tests run) and --threads
(BLAS threads, default 1), prints its progress and results for a person, and
ends with one line `RESULT {json}` for a program. The same seed and thread
count give the same numbers. A demo that needs a missing optional package
(matplotlib, scikit-learn) exits with status 2 and says what to install.
"""
import argparse
import importlib
import inspect
import sys

from crnn.demos._common import MissingDependency, blas_threads

DEMOS = ("charlm", "adding", "forecast", "classify", "tag", "translate", "gradients")


def _module(name):
    return importlib.import_module(f"crnn.demos.{name}")


def _runner(name):
    def run(args):
        try:
            with blas_threads(args.threads):
                return _module(name).run(args) or 0
        except MissingDependency as e:
            print(f"crnn demo {name}: {e}", file=sys.stderr)
            return 2
    return run


def add_parser(sub):
    demo = sub.add_parser("demo", help="run an application demo (charlm, adding, forecast, "
                          "classify, tag, translate, gradients)", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    names = demo.add_subparsers(dest="demo", metavar="NAME")
    names.required = True
    for name in DEMOS:
        mod = _module(name)
        doc = (mod.__doc__ or "").strip()
        p = names.add_parser(name, help=doc.splitlines()[0] if doc else name, description=doc,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(func=_runner(name))

    from crnn.demos import charlm

    s = sub.add_parser("sample", help="sample text from a model saved by `crnn demo charlm`",
                       description=inspect.cleandoc(charlm.sample_main.__doc__),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    charlm.add_sample_arguments(s)
    s.set_defaults(func=charlm.sample_main)
