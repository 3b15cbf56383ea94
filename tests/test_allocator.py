"""The ``discotok`` command keeps glibc from returning big blocks between batches (``discotok.allocator``),
unless ``DISCOTOK_MALLOC=default``; benchmark rows say which allocator ran."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = ("from discotok.allocator import tune_glibc_malloc\n"
         "from discotok.bench.quantizers import allocator_in_effect\n"
         "print(tune_glibc_malloc(), allocator_in_effect())")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("setting, expected", [(None, "True tuned"), ("default", "False default")])
def test_mallopt_applies_unless_asked_not_to(setting, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if setting:
        env["DISCOTOK_MALLOC"] = setting
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split()[-2:] == expected.split()
