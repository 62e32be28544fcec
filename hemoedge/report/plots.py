"""Figure helpers shared by the report's sections and the sweep view: matplotlib (headless,
configured offline), a figure as inline SVG with no URL in it, and the Pareto dominance test
the accuracy-vs-latency plots mark their fronts with.
"""

from __future__ import annotations

import io
import re

FIG_WIDTH = 8.0  # inches; 100 dpi in the SVG


def pareto_dominated(points: dict[str, tuple[float, float]]) -> set[str]:
    """Names of dominated points, both axes lower-is-better: p is dominated when some q is no
    worse on both axes and strictly better on at least one."""
    out = set()
    for p, (px, py) in points.items():
        for q, (qx, qy) in points.items():
            if q != p and qx <= px and qy <= py and (qx < px or qy < py):
                out.add(p)
                break
    return out


def pyplot():
    """matplotlib.pyplot on the Agg backend, loaded on first use."""
    from hemoedge import offline

    offline.configure()  # MPLCONFIGDIR inside the project home, before matplotlib loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_SVG_STRIP = (re.compile(r"<\?xml[^>]*\?>\s*"), re.compile(r"<!DOCTYPE[^>]*>\s*"),
              re.compile(r"<metadata>.*?</metadata>\s*", re.S),
              re.compile(r'\s+xmlns(:\w+)?="[^"]*"'))


def fig_svg(fig, salt: str) -> str:
    """Inline SVG without XML prolog, metadata or namespace URLs (HTML parses <svg> as SVG)."""
    plt = pyplot()
    buf = io.StringIO()
    with plt.rc_context({"svg.hashsalt": salt, "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    svg = buf.getvalue()
    for pat in _SVG_STRIP:
        svg = pat.sub("", svg)
    return f'<figure class="fig">{svg}</figure>'
