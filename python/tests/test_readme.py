"""The README's "Watch your PyTorch training" example works as written."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers import REPO, of_kind, read_records


def test_the_readme_example_runs_and_records(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Watch your PyTorch training", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(code.strip().splitlines()) == 10
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = read_records(tmp_path / "torch-run.jsonl")
    assert records[0]["layers"][0]["name"] == "1" and records[-1] == {**records[-1], "kind": "end", "step": 200}
    assert all(s["loss"] > 0 for s in of_kind(records, "snapshot"))
