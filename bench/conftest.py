"""pytest configuration for crnn's benchmarks, which run only as `pytest bench/`
(the project's testpaths is tests/).

- marker `large`: the M and L configs (minutes); `-m "not large"` skips them.
- machine_info in the JSON gets the BLAS builds, torch's version and the load.
Helpers live in bench/harness.py.
"""
import os

from harness import torch
from threadpoolctl import threadpool_info


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "large: the M and L configs, slow (deselect with -m 'not large')")


def pytest_benchmark_update_machine_info(config, machine_info):
    """What ratios.py and a reader need to judge a run: BLAS builds, torch, load."""
    machine_info["threadpools"] = [
        {k: p.get(k) for k in ("internal_api", "version", "architecture", "filepath",
                               "num_threads")}
        for p in threadpool_info()]
    machine_info["torch"] = None if torch is None else torch.__version__
    machine_info["loadavg_at_start"] = os.getloadavg()
