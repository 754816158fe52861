import pathlib

import crnn


def pytest_report_header(config):
    where = pathlib.Path(crnn.__file__).parent
    return f"crnn {crnn.__version__} imported from {where}"
