"""A party started by a launcher checks, once it has asked to end with it, that the launcher
is still there: one that died first would never signal it."""

from __future__ import annotations

import subprocess
import sys


def test_a_party_whose_launcher_has_ended_does_not_start():
    code = (
        "import os\n"
        "from consortium.jobs.party import die_with\n"
        "die_with(os.getppid())\n"
        "print('the launcher is there')\n"
        "die_with(os.getppid() + 1)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout == "the launcher is there\n"
    assert done.returncode == 1
    assert "the launcher that started this party (pid" in done.stderr
    assert "has ended" in done.stderr
