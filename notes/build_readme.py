"""Assemble README.md from the section drafts in notes/ and the tool's own results summary.

    .venv/bin/python notes/build_readme.py [runs/default]
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["readme-core.md", "DEFAULT_MODELS", "RESULTS", "readme-export.md", "readme-quantize.md",
         "readme-bench-cpu.md", "readme-bench-web.md", "readme-webapp.md", "readme-report.md",
         "readme-gate-proof.md", "readme-sweep.md", "readme-dev.md"]


def main(run_dir: str = "runs/default") -> None:
    parts = []
    for name in ORDER:
        if name == "DEFAULT_MODELS":
            card = (ROOT / "hemoedge/models/default/README.md").read_text()
            parts.append("### The embedded default models\n\n" + card.split("\n", 2)[2])
        elif name == "RESULTS":
            parts.append((ROOT / "notes/results-section.md").read_text())
        else:
            text = (ROOT / "notes" / name).read_text()
            lines = [ln for ln in text.splitlines() if not ln.startswith("<!--")]
            parts.append("\n".join(lines).strip() + "\n")
    (ROOT / "README.md").write_text("\n".join(p.rstrip() + "\n" for p in parts))


if __name__ == "__main__":
    main(*sys.argv[1:])
