"""An installed flowbot (a wheel, as the container installs it) carries what it reads at
run time: the default templates, Adobe's sample payloads and the example rules."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_contains_templates_samples_and_example_rules(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    [wheel] = tmp_path.glob("flowbot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "flowbot" / "templates").rglob("*.j2"):
        assert f"flowbot/templates/{template.parent.name}/{template.name}" in names
    assert "flowbot/samples/01-sources-run-success-with-row-errors.json" in names
    assert "flowbot/examples/rules.yaml" in names
