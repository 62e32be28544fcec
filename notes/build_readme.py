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
            text = "\n".join(lines).strip() + "\n"
            if "SWEEP_RESULTS" in text:
                text = text.replace("SWEEP_RESULTS", sweep_tables())
            parts.append(text)
    (ROOT / "README.md").write_text("\n".join(p.rstrip() + "\n" for p in parts))


def sweep_tables(report: Path = ROOT / "runs/sweep/report.md") -> str:
    """The "Backbone sweep" section of the sweep's own Markdown report, headings demoted."""
    if not report.is_file():
        return "(no full sweep has been run on this checkout yet: `make sweep`)"
    text = report.read_text()
    start = text.index("## Backbone sweep")
    end = text.find("\n## ", start + 3)
    body = text[start:end if end > 0 else None].split("\n", 1)[1]
    return "\n".join("#" + ln if ln.startswith("#") else ln for ln in body.splitlines()).strip()


if __name__ == "__main__":
    main(*sys.argv[1:])
