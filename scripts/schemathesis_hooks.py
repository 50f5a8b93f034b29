"""Schemathesis hooks for Gatehouse's management API (/mgmt/openapi.json).

The document describes every rule JSON Schema can state. A few strings hold a whole document
whose rules it cannot state, so their schemas name a format of ours, and a few rules span two
members. This file teaches schemathesis to write valid values for those; without it, a
"schema-valid" value would be, say, a policy that does not compile, which the server rightly
refuses. Values that break the formats are still generated as negative data, and refused.

Loaded by `schemathesis.toml` at the repository root (run schemathesis from there), or with
SCHEMATHESIS_HOOKS=scripts/schemathesis_hooks.py, as crates/cli/tests/schemathesis.rs does.

  policy-xml                   a policy document that compiles at every scope (the body of the
                               application/xml PUTs of /mgmt/policy and the scopes' /policy)
  policy-fragment-xml          a <fragment> that compiles
  pem-certificate              PEM certificates made here with openssl, with and without a key
  api-description             small OpenAPI 3 and Swagger 2 documents, JSON and YAML
  event-hub-connection-string  connection strings with an EntityPath
  gateway-token-expiry         RFC 3339 times from 5 minutes to 29 days from now

The portal settings' colours must stay readable (WCAG AA, 4.5:1): text on the background, white
text on the primary colour, and the primary colour on the background. A body whose colours are
all valid `#rrggbb` but break that rule gets a readable palette before it is sent.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile

import schemathesis
from hypothesis import strategies as st

# ---------------------------------------------------------------------------------------------
# Policies

NAMES = st.from_regex(r"\AX-[A-Za-z][A-Za-z0-9-]{0,12}\Z")
WORDS = st.from_regex(r"\A[A-Za-z0-9 ._-]{0,20}\Z")

INBOUND = [
    lambda n, w: f'<set-header name="{n}" exists-action="override"><value>{w}</value></set-header>',
    lambda n, w: f'<set-header name="{n}" exists-action="delete" />',
    lambda n, w: f'<set-query-parameter name="q" exists-action="append"><value>{w}</value></set-query-parameter>',
    lambda n, w: '<set-variable name="path" value="@(context.Request.Url.Path)" />',
    lambda n, w: (
        '<choose><when condition="@(context.Request.Method == &quot;GET&quot;)">'
        f'<set-header name="{n}" exists-action="override"><value>{w}</value></set-header>'
        "</when></choose>"
    ),
]
OUTBOUND = [
    lambda n, w: f'<set-header name="{n}" exists-action="append"><value>@(context.Request.Method)</value></set-header>',
    lambda n, w: f'<set-header name="{n}" exists-action="override"><value>{w}</value></set-header>',
]
BACKEND = ["", "<base />", "<forward-request />"]


@st.composite
def policy_sections(draw, section: str, snippets: list) -> str:
    parts = draw(st.lists(st.sampled_from(snippets), max_size=2))
    body = "".join(part(draw(NAMES), draw(WORDS)) for part in parts)
    if draw(st.booleans()):
        body = "<base />" + body
    return f"<{section}>{body}</{section}>" if body else f"<{section} />"


@st.composite
def policy_documents(draw) -> str:
    inbound = draw(policy_sections("inbound", INBOUND))
    backend = draw(st.sampled_from(BACKEND))
    backend = f"<backend>{backend}</backend>" if backend else "<backend />"
    outbound = draw(policy_sections("outbound", OUTBOUND))
    on_error = draw(policy_sections("on-error", OUTBOUND))
    return f"<policies>{inbound}{backend}{outbound}{on_error}</policies>"


@st.composite
def policy_fragments(draw) -> str:
    parts = draw(st.lists(st.sampled_from(INBOUND), min_size=1, max_size=3))
    body = "".join(part(draw(NAMES), draw(WORDS)) for part in parts)
    return f"<fragment>{body}</fragment>"


schemathesis.openapi.format("policy-xml", policy_documents())
schemathesis.openapi.format("policy-fragment-xml", policy_fragments())
# The policy PUTs take the document itself as their application/xml body (schemathesis would
# otherwise wrap a string body in an element of its own).
schemathesis.openapi.media_type(
    "application/xml", policy_documents().map(lambda text: text.encode())
)

# ---------------------------------------------------------------------------------------------
# PEM certificates, made once per run

def _make_certificates() -> list[str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "schemathesis_hooks.py needs openssl to make test certificates; install it (apt-get install openssl)"
        )
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in [
            ("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
            ("rsa", ["-newkey", "rsa:2048"]),
        ]:
            key = os.path.join(tmp, f"{name}.key")
            cert = os.path.join(tmp, f"{name}.pem")
            subprocess.run(
                [openssl, "req", "-x509", *args, "-nodes", "-keyout", key, "-out", cert,
                 "-days", "3650", "-subj", f"/CN={name}.fuzz.example",
                 "-addext", f"subjectAltName=DNS:{name}.fuzz.example,DNS:*.fuzz.example"],
                check=True, capture_output=True,
            )
            with open(cert) as c, open(key) as k:
                cert_text, key_text = c.read(), k.read()
            out.append(cert_text)
            out.append(cert_text + key_text)
    return out


CERTIFICATES = _make_certificates()
schemathesis.openapi.format("pem-certificate", st.sampled_from(CERTIFICATES))

# ---------------------------------------------------------------------------------------------
# API descriptions

SEGMENTS = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}\Z")


@st.composite
def api_descriptions(draw) -> str:
    segment = draw(SEGMENTS)
    title = draw(st.from_regex(r"\A[A-Za-z][A-Za-z0-9 ]{0,15}\Z"))
    kind = draw(st.sampled_from(["openapi-json", "openapi-yaml", "swagger-json"]))
    if kind == "swagger-json":
        return json.dumps({
            "swagger": "2.0",
            "info": {"title": title, "version": "1"},
            "paths": {f"/{segment}/{{id}}": {"get": {
                "parameters": [{"name": "id", "in": "path", "required": True, "type": "string"}],
                "responses": {"200": {"description": "ok"}},
            }}},
        })
    if kind == "openapi-json":
        return json.dumps({
            "openapi": "3.0.3",
            "info": {"title": title, "version": "1"},
            "paths": {f"/{segment}": {"post": {
                "operationId": "create",
                "responses": {"201": {"description": "created"}},
            }}},
        })
    return (
        "openapi: 3.1.0\n"
        f"info: {{title: '{title}', version: '2'}}\n"
        "paths:\n"
        f"  /{segment}:\n"
        "    get:\n"
        "      operationId: list\n"
        "      responses: {'200': {description: ok}}\n"
    )


schemathesis.openapi.format("api-description", api_descriptions())

# ---------------------------------------------------------------------------------------------
# Event Hubs connection strings

schemathesis.openapi.format(
    "event-hub-connection-string",
    st.builds(
        lambda ns, key_name, key, hub: (
            f"Endpoint=sb://{ns}.servicebus.windows.net/;SharedAccessKeyName={key_name};"
            f"SharedAccessKey={key};EntityPath={hub}"
        ),
        st.from_regex(r"\A[a-z][a-z0-9-]{2,20}[a-z0-9]\Z"),
        st.from_regex(r"\A[A-Za-z][A-Za-z0-9]{0,15}\Z"),
        st.from_regex(r"\A[A-Za-z0-9+/]{8,43}=\Z"),
        st.from_regex(r"\A[a-z][a-z0-9._-]{0,20}\Z"),
    ),
)

# ---------------------------------------------------------------------------------------------
# Gateway token expiries: later than now, at most 30 days away, when the request is made.

schemathesis.openapi.format(
    "gateway-token-expiry",
    st.integers(min_value=5, max_value=29 * 24 * 60).map(
        lambda minutes: (
            datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
        ).strftime("%Y-%m-%dT%H:%M:%SZ")
    ),
)

# ---------------------------------------------------------------------------------------------
# Portal colours

DEFAULT_COLOURS = {"primaryColor": "#1f4e8c", "backgroundColor": "#ffffff", "textColor": "#1a1a1a"}
READABLE = [
    {"primaryColor": "#1f4e8c", "backgroundColor": "#ffffff", "textColor": "#1a1a1a"},
    {"primaryColor": "#5a1e8c", "backgroundColor": "#fffdf5", "textColor": "#222222"},
    {"primaryColor": "#0b5d1e", "backgroundColor": "#f4f8f4", "textColor": "#000000"},
]


def _rgb(text):
    if not isinstance(text, str) or len(text) != 7 or text[0] != "#":
        return None
    try:
        return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
    except ValueError:
        return None


def _contrast(a, b) -> float:
    def luminance(c):
        def channel(v):
            s = v / 255
            return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4
        return 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2])
    la, lb = luminance(a), luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if (
        case.method.upper() in ("PUT", "PATCH")
        and case.path == "/mgmt/backends/{backendId}"
        and isinstance(case.body, dict)
    ):
        _fix_backend(str((case.path_parameters or {}).get("backendId", "")), case.body)
        return
    if case.method.upper() != "PUT" or case.path != "/mgmt/portal/settings":
        return
    body = case.body
    if not isinstance(body, dict):
        return
    given = {k: body.get(k, DEFAULT_COLOURS[k]) for k in DEFAULT_COLOURS}
    rgb = {k: _rgb(v) for k, v in given.items()}
    if any(v is None for v in rgb.values()):
        return  # a colour that is not #rrggbb: the server refuses it for that, as it should
    primary, background, text = rgb["primaryColor"], rgb["backgroundColor"], rgb["textColor"]
    readable = (
        _contrast(text, background) >= 4.5
        and _contrast((255, 255, 255), primary) >= 4.5
        and _contrast(primary, background) >= 4.5
    )
    if readable:
        return
    palette = READABLE[sum(map(ord, "".join(given.values()))) % len(READABLE)]
    for member in DEFAULT_COLOURS:
        if member in body or member == "textColor":
            body[member] = palette[member]
    # Members left out take their defaults, which must fit the palette too.
    for member in DEFAULT_COLOURS:
        body.setdefault(member, palette[member])


# ---------------------------------------------------------------------------------------------
# Circuit breaker durations: ISO 8601, weeks to seconds, longer than zero, at most 365 days.

schemathesis.openapi.format(
    "breaker-duration",
    st.one_of(
        st.integers(min_value=1, max_value=3600).map(lambda n: f"PT{n}S"),
        st.integers(min_value=1, max_value=1440).map(lambda n: f"PT{n}M"),
        st.integers(min_value=1, max_value=365).map(lambda n: f"P{n}D"),
        st.integers(min_value=1, max_value=52).map(lambda n: f"P{n}W"),
        st.tuples(st.integers(0, 23), st.integers(1, 59)).map(lambda t: f"PT{t[0]}H{t[1]}M"),
        st.integers(min_value=1, max_value=999).map(lambda n: f"PT0.{n:03d}S"),
    ),
)


# ---------------------------------------------------------------------------------------------
# Backends: rules over several members or items that JSON Schema cannot state. A status code
# range's `min` is not above its `max`; a pool holds each member once and never itself.

def _backend_id(reference):
    text = reference.strip()
    at = text.rfind("/backends/")
    return text[at + len("/backends/"):] if at >= 0 else text


def _fix_backend(backend_id, body):
    breaker = body.get("circuitBreaker")
    rules = breaker.get("rules") if isinstance(breaker, dict) else None
    for rule in rules if isinstance(rules, list) else []:
        condition = rule.get("failureCondition") if isinstance(rule, dict) else None
        ranges = condition.get("statusCodeRanges") if isinstance(condition, dict) else None
        for r in ranges if isinstance(ranges, list) else []:
            if (
                isinstance(r, dict)
                and isinstance(r.get("min"), int)
                and isinstance(r.get("max"), int)
                and r["min"] > r["max"]
            ):
                r["min"], r["max"] = r["max"], r["min"]
    pool = body.get("pool")
    services = pool.get("services") if isinstance(pool, dict) else None
    if not isinstance(services, list) or not all(
        isinstance(s, dict) and isinstance(s.get("id"), str) for s in services
    ):
        return
    seen, kept = {backend_id}, []
    for member in services:
        member_id = _backend_id(member["id"])
        if member_id not in seen:
            seen.add(member_id)
            kept.append(member)
    if services and not kept:
        # The pool held only itself: name another backend instead (which may not exist: 404).
        other = "member" if backend_id != "member" else "member2"
        kept = [dict(services[0], id=other)]
    pool["services"] = kept
