"""Execution providers other than WASM in `hemoedge bench web --ep` (and `parity --web --ep`):
which provider each page's sessions really got, and the web.ep.available figure.

A build made with `webapp build --ep NAME` (hemoedge.web.ep) creates each session with the
provider alone and falls back to WASM explicitly; its worker reports, per session, the provider
it got and why not (the bench hook's session.ep). Per page the harness notes that report
(`note_page`); a figure of a provider unit is measured only for the models (and, for frames
and start times, the pairing) that really ran on the provider, so a WASM fallback is never
recorded under an ep= variant. `emit_ep` then writes, per variant and thread count:

    web.ep.available   1 when every page's sessions ran on the provider, else 0; params ep,
                       threads, reason (the first failure, one line), adapter (WebGPU's adapter
                       as the worker saw it), pages, ep_sessions (per role: the provider got,
                       create and first-run ms of the last page)

WASM units write none of this: their figures and variants are what they always were.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hemoedge.names import ROLES, WASM, ep_of
from hemoedge.web.ep import BROWSER_ARGS

NO_REPORT = ("the page reported no execution provider: the build was not made with "
             "`webapp build --ep`")


def launch_args(eps: Iterable[str]) -> tuple[str, ...]:
    """The Chromium flags that let it offer these providers (none for WASM alone)."""
    out: list[str] = []
    for ep in eps:
        out += BROWSER_ARGS[ep]
    return tuple(dict.fromkeys(out))


def page_status(info: dict, ep: str) -> dict[str, Any]:
    """{'ok': {role: bool}, 'reason': str | None, ...} for a page whose bench hook is `info`
    (open_app's answer); every role ok for WASM."""
    if ep == WASM:
        return {"ok": dict.fromkeys(ROLES, True), "reason": None}
    rep = (info.get("session") or {}).get("ep")
    if not isinstance(rep, dict):
        return {"ok": dict.fromkeys(ROLES, False), "reason": NO_REPORT, "adapter": None,
                "sessions": {}}
    sessions = rep.get("sessions") or {}
    ok = {r: (sessions.get(r) or {}).get("ep") == ep for r in ROLES}
    reason = rep.get("reason") or next((sessions[r].get("reason") for r in ROLES
                                        if r in sessions and not ok[r]), None)
    if not all(ok.values()) and not reason:
        reason = f"{ep}: the worker reported {rep.get('requested')!r} sessions {sessions}"
    return {"ok": ok, "reason": reason, "adapter": rep.get("adapter"),
            "sessions": {r: {k: (round(v, 1) if isinstance(v, float) else v)
                             for k, v in (sessions.get(r) or {}).items()} for r in ROLES}}


def note_page(pool: Any, unit: Any, threads: int, info: dict) -> dict[str, Any]:
    """Record one page of a provider unit in pool.env['ep_pages']; returns page_status."""
    st = page_status(info, unit.ep)
    if unit.ep == WASM:
        return st
    pages = pool.env.setdefault("ep_pages", [])
    base = {"ep": unit.ep, "threads": threads, "adapter": st.get("adapter")}
    if unit.kind == "pairing":
        pages.append({**base, "variant": unit.variant, "ok": all(st["ok"].values()),
                      "reason": st["reason"], "sessions": st.get("sessions")})
    for role in unit.roles:
        why = None if st["ok"][role] else (st.get("sessions", {}).get(role, {}).get("reason")
                                            or st["reason"])
        pages.append({**base, "variant": unit.model_variant(role), "ok": st["ok"][role],
                      "reason": why, "sessions": {role: st.get("sessions", {}).get(role)}})
    return st


def emit_ep(pool: Any, res: Any) -> None:
    """web.ep.available per (variant, threads) from the pages noted (nothing for WASM runs)."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for p in pool.env.get("ep_pages", []):
        groups.setdefault((p["variant"], p["threads"]), []).append(p)
    for (variant, t), pages in sorted(groups.items()):
        ok = all(p["ok"] for p in pages)
        reason = next((p["reason"] for p in pages if not p["ok"]), None)
        res.add("web.ep.available", variant, 1.0 if ok else 0.0, unit="", better="higher",
                n=len(pages), ep=ep_of(variant), threads=t, reason=reason or "",
                adapter=pages[-1].get("adapter"), pages=len(pages),
                ep_sessions=pages[-1].get("sessions"))


def available(res: Any, variant: str) -> bool | None:
    """Did every page of `variant` run on its provider? None when not measured (or WASM)."""
    ms = [m for m in res.metrics if m.name == "web.ep.available" and m.variant == variant]
    return None if not ms else all(m.value == 1 for m in ms)


# ---------------------------------------------------------------------------- parity --web --ep
def parity_page(c: Any, page: Any, info: dict, ep: str) -> dict[str, bool]:
    """Note which of a parity page's sessions ran on `ep` (in its entry of c.pages); returns
    {role: ok}. The page's files and its end-to-end pairing are compared only where ok."""
    st = page_status(info, ep)
    if ep != WASM and c.pages:
        c.pages[-1]["ep"] = {"ep": ep, "ok": st["ok"], "reason": st["reason"],
                             "adapter": st.get("adapter"), "sessions": st.get("sessions")}
    return st["ok"]


def parity_ep_metrics(c: Any, res: Any, ep: str) -> None:
    """With a provider other than WASM: every web.parity.* figure's variant gains ep=NAME, the
    variants' files likewise, and web.parity.ep.available (1/0, reason) is written per file and
    end-to-end pairing the pages held."""
    if ep == WASM:
        return
    from hemoedge.names import ROLE_KEY, variant_name, with_ep

    for m in res.metrics:
        m.variant = with_ep(m.variant, ep)
    res.variants = {with_ep(k, ep): v for k, v in res.variants.items()}
    for pg in c.pages:
        st = pg.get("ep")
        if st is None:
            continue
        det, est = (dict(kv.split("=", 1) for kv in pg["variant"].split(","))[k]
                    for k in ("det", "est"))
        prec = {"detector": det, "estimator": est}
        rows = [(variant_name(**{ROLE_KEY[r]: prec[r]}), st["ok"][r]) for r in pg["files"]]
        if pg["e2e"]:
            rows.append((pg["variant"], all(st["ok"].values())))
        for v, ok in rows:
            res.add("web.parity.ep.available", with_ep(v, ep), 1.0 if ok else 0.0, unit="",
                    better="higher", ep=ep, threads=pg["threads"],
                    reason="" if ok else (st["reason"] or ""), adapter=st.get("adapter"))
