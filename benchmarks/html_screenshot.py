"""Screenshot of the HTML report for the README: the tied LM saved as PyTorch and as folded ONNX.

    .venv/bin/python benchmarks/html_screenshot.py     # writes reports/html_report.png

Runs ``sharescan analyze --html`` and photographs the page in the system
Chromium (the one the browser test uses; nothing is downloaded).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.chromium import chromium  # noqa: E402

MODELS = ("fixtures/tiny_lm.pt", "fixtures/tiny_lm_folded.onnx")
OUT = ROOT / "reports" / "html_report.png"
# The top of the page: summary, models, bytes by relation, heatmap and the first groups.
CLIP = {"x": 0, "y": 0, "width": 1100, "height": 1400}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "report.html"
        subprocess.run([sys.executable, "-m", "sharescan", "analyze", *MODELS, "--html", str(page_path), "--json"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        with chromium() as browser:
            page = browser.new_page(viewport={"width": CLIP["width"], "height": CLIP["height"]})
            page.goto(page_path.as_uri())
            page.screenshot(path=str(OUT), clip=CLIP)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
