"""What a static host needs besides the built files: precompressed <file>.br / <file>.gz
siblings (brotli cached by content hash), and the host configurations, Netlify / Cloudflare
Pages `_headers` and an nginx `location` block (docs/deploy.md).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import posixpath
import re
from pathlib import Path

from hemoedge.web.assets import HASH_LEN

log = logging.getLogger(__name__)

COMPRESS_MIN_BYTES = 1024  # smaller files are sent as they are
BROTLI_TEXT_QUALITY = 11  # text and the WASM (cached by content hash, so paid once)
BROTLI_MODEL_QUALITY = 9  # ONNX weights barely compress; 11 costs ~4 s per MB for ~4 %


# ---------------------------------------------------------------------------- compression
def _cache_dir() -> Path:
    from hemoedge.offline import home

    return home() / "cache" / "webapp-compress"


def _brotli(data: bytes, quality: int) -> bytes | None:
    """Brotli-compressed bytes (cached by content hash and quality), or None without brotli."""
    try:
        import brotli
    except ImportError:  # pinned in pyproject.toml; without it only .gz siblings are written
        return None
    key = f"{hashlib.sha256(data).hexdigest()}.q{quality}.br"
    cached = _cache_dir() / key
    if cached.is_file():
        return cached.read_bytes()
    out = brotli.compress(data, quality=quality, lgwin=24)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(out)
        os.replace(tmp, cached)
    except OSError as e:  # a read-only home only costs the time again next build
        log.debug("compression cache not written: %s", e)
    return out


def compressed_siblings(name: str, data: bytes) -> dict[str, bytes]:
    """{'.br': ..., '.gz': ...} for a file worth compressing (each kept only when smaller)."""
    if len(data) < COMPRESS_MIN_BYTES or name.endswith(".png"):
        return {}
    out = {".gz": gzip.compress(data, compresslevel=9, mtime=0)}
    q = BROTLI_MODEL_QUALITY if name.endswith(".onnx") else BROTLI_TEXT_QUALITY
    br = _brotli(data, q)
    if br is not None:
        out[".br"] = br
    if ".br" in out and len(out[".br"]) >= len(out[".gz"]):
        del out[".br"]  # servers prefer br: never send the larger one (fp32 weights)
    return {k: v for k, v in out.items() if len(v) < len(data)}


# ---------------------------------------------------------------------------- host configs
def _content_type(name: str) -> str | None:
    from hemoedge.web.serve import MIME

    return MIME.get(posixpath.splitext(name)[1])


def headers_file(files: list[str], base: str, version: str) -> str:
    """Netlify / Cloudflare Pages `_headers`: isolation + CSP everywhere, cache rules and the
    MIME types static hosts may not know, per file (no rule sets a header twice)."""
    from hemoedge.web.assets import ENTRY_POINTS
    from hemoedge.web.serve import IMMUTABLE, REVALIDATE, SECURITY_HEADERS

    lines = [f"# hemoedge webapp {version}: headers for Netlify / Cloudflare Pages, app at {base}",
             f"{base}*"]
    lines += [f"  {k}: {v}" for k, v in SECURITY_HEADERS.items()]
    for name in dict.fromkeys(["", *ENTRY_POINTS, *sorted(files)]):
        lines.append(f"{base}{name}")
        hashed = name not in ("", *ENTRY_POINTS)
        lines.append(f"  Cache-Control: {IMMUTABLE if hashed else REVALIDATE}")
        ct = _content_type(name) if name.endswith((".wasm", ".mjs", ".webmanifest")) else None
        if ct:
            lines.append(f"  Content-Type: {ct}")
    return "\n".join(lines) + "\n"


def nginx_conf(base: str, version: str) -> str:
    """An nginx `location` block for a `server { }`: isolation + CSP, MIME types, the build's
    .gz siblings (gzip_static), immutable hashed names, revalidated entry points."""
    from hemoedge.web.serve import IMMUTABLE, MIME, REVALIDATE, SECURITY_HEADERS

    types: dict[str, list[str]] = {}
    for ext, mime in MIME.items():
        types.setdefault(mime.split(";")[0], []).append(ext.lstrip("."))
    sec = [f'        add_header {k} "{v}" always;' for k, v in SECURITY_HEADERS.items()]
    root = base.rstrip("/") or ""
    return "\n".join([
        f"# hemoedge webapp {version}: include inside a server {{ }} block.",
        f"# The built folder's files must be at <root>{base} (set `root` below).",
        f"location ^~ {base} {{",
        "    root /srv/www;  # EDIT: the folder that holds" + (f" {root.lstrip('/')}/" if root
                                                                 else " index.html"),
        "    index index.html;",
        "    types {",
        *[f"        {mime} {' '.join(exts)};" for mime, exts in types.items()],
        "    }",
        "    gzip_static on;  # sends <file>.gz written by the build",
        "    gzip_vary on;",
        "    # brotli_static on;  # with the ngx_brotli module: sends <file>.br",
        *[line[4:] for line in sec],
        f'    add_header Cache-Control "{REVALIDATE}" always;',
        f'    location ~ "{re.escape(base)}[^/]+\\.[0-9a-f]{{{HASH_LEN}}}\\.[A-Za-z0-9]+$" {{',
        *sec,
        f'        add_header Cache-Control "{IMMUTABLE}";  # 2xx/3xx only: never a 404',
        "    }",
        f"    location ~ \"^{re.escape(base)}(_headers|nginx\\.conf)$\" {{ return 404; }}",
        "}",
        "",
    ])
