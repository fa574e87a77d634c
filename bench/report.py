"""The stdout table and the target verdicts, from the results document."""

from __future__ import annotations

import typing as t

from .run_targets import TARGETS

Doc = dict[str, t.Any]


def _f(value: t.Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"


def targets(doc: Doc) -> list[Doc]:
    """Each target: measured value, limit, met or not, and the margin."""
    endpoints = doc.get("endpoints", {})
    return [
        *_floor_ratio_verdicts(endpoints),
        *_observability_verdicts(endpoints),
        *_flow_observability_verdicts(doc.get("flows", {})),
        *_round_trip_verdicts(doc.get("redis_per_step", {}), endpoints),
        *_kind_round_trip_verdicts(doc.get("redis_per_step_by_kind", {})),
        *_memory_verdicts(doc.get("memory", {})),
        *_gateway_verdicts(doc.get("gateway", {})),
        *_peer_ratio_verdicts(doc.get("flows", {})),
    ]


def _floor_ratio_verdicts(endpoints: Doc) -> list[Doc]:
    return [
        _verdict(
            f"{name}: throughput vs floor",
            row.get("ratio"),
            TARGETS["floor_ratio_min"],
            higher_is_better=True,
            unit="x",
        )
        for name, row in endpoints.items()
    ]


#: Issue #10: no extra Redis round trip for observability on these paths.
OBSERVABILITY_NO_EXTRA_TRIP = ("token_code", "token_refresh", "gateway_check")


def _observability_verdicts(endpoints: Doc) -> list[Doc]:
    """The proxy against itself with audit, traces and metrics off."""
    out = []
    for name, row in endpoints.items():
        cost = row.get("observability")
        if not cost:
            continue
        out.append(
            _verdict(
                f"{name}: slower with observability on",
                cost["slower"],
                TARGETS["observability_slower_max"],
                higher_is_better=False,
            )
        )
        if name in OBSERVABILITY_NO_EXTRA_TRIP:
            on = (row["proxy"].get("redis") or {}).get("round_trips")
            off = (row["quiet"].get("redis") or {}).get("round_trips")
            extra = round(on - off, 2) if on is not None and off is not None else None
            out.append(
                _verdict(
                    f"{name}: Redis round trips added by observability",
                    extra,
                    TARGETS["observability_extra_round_trips_max"],
                    higher_is_better=False,
                )
            )
    return out


def _flow_observability_verdicts(flows: Doc) -> list[Doc]:
    """Whole flows: two new proxies, with audit, traces and metrics on and off."""
    cost = flows.get("observability")
    if not cost:
        return []
    return [
        _verdict(
            "complete flows: slower with observability on",
            cost["slower"],
            TARGETS["observability_slower_max"],
            higher_is_better=False,
        ),
        # The steadier figure: flows/s moves with how each turn's connections
        # fell on the workers, the proxy's CPU per flow does not.
        _verdict(
            "complete flows: proxy CPU per flow added by observability",
            cost.get("cpu_more"),
            TARGETS["observability_slower_max"],
            higher_is_better=False,
        ),
    ]


def _round_trip_verdicts(steps: Doc, endpoints: Doc) -> list[Doc]:
    """Per flow step measured alone, then per endpoint under load."""
    out = [
        _verdict(
            f"{name}: Redis round trips per request",
            row["round_trips"],
            TARGETS["round_trips_max"],
            higher_is_better=False,
        )
        for name, row in steps.items()
        if name != "upstream_login"
    ]
    for name, row in endpoints.items():
        redis_row = (row.get("proxy") or {}).get("redis")
        if redis_row:
            out.append(
                _verdict(
                    f"{name} (under load): Redis round trips per request",
                    round(redis_row["round_trips"], 2),
                    TARGETS["round_trips_max"],
                    higher_is_better=False,
                )
            )
    return out


def _kind_round_trip_verdicts(by_kind: Doc) -> list[Doc]:
    """The OAuth steps of the CIMD and private_key_jwt flows, measured alone."""
    return [
        _verdict(
            f"{kind} {name}: Redis round trips per request",
            row["round_trips"],
            TARGETS["round_trips_max"],
            higher_is_better=False,
        )
        for kind, steps in by_kind.items()
        for name, row in steps.items()
        if name != "upstream_login"
    ]


def _memory_verdicts(memory: Doc) -> list[Doc]:
    out = []
    if "client" in memory:
        out.append(
            _verdict(
                "Redis bytes per registered client",
                memory["client"]["bytes_per_client"],
                TARGETS["client_bytes_max"],
                higher_is_better=False,
            )
        )
    if "grant" in memory:
        out.append(
            _verdict(
                "Redis bytes per live grant",
                memory["grant"]["bytes_per_grant"],
                TARGETS["grant_bytes_max"],
                higher_is_better=False,
            )
        )
    return out


def _gateway_verdicts(gateway: Doc) -> list[Doc]:
    if "added_p50_ms" not in gateway:
        return []
    policed = gateway.get("policed", {})
    guarded = gateway.get("guarded", {})
    return [
        _verdict(
            "gateway added latency p50 (ms)",
            gateway["added_p50_ms"],
            TARGETS["gateway_added_p50_ms_max"],
            higher_is_better=False,
        ),
        *(
            _verdict(
                f"gateway added p50, {label} (ms)",
                doc["added_p50_ms"],
                TARGETS["gateway_added_p50_ms_max"],
                higher_is_better=False,
            )
            for label, doc in (
                ("policy + scopes", policed),
                ("policy + scopes + identity JWT", guarded),
            )
            if "added_p50_ms" in doc
        ),
        {
            "target": "SSE passes through unbuffered",
            "value": gateway.get("sse_unbuffered"),
            "limit": True,
            "met": bool(gateway.get("sse_unbuffered")),
            "margin": "",
        },
    ]


def _peer_ratio_verdicts(flows: Doc) -> list[Doc]:
    """Complete flows/s over FastMCP's, with and without the MCP call."""
    ours = (flows.get("proxy") or {}).get("flows_per_second")
    theirs = (flows.get("peer") or {}).get("flows_per_second")
    if ours is None or not theirs:
        return [
            {
                "target": "complete flows/s vs FastMCP",
                "value": None,
                "limit": TARGETS["peer_ratio_min"],
                "met": None,
                "margin": (flows.get("peer") or {}).get("skipped", "no peer figure"),
            }
        ]
    out = []
    for label, mine, peer in (
        ("", "proxy", "peer"),
        (" (OAuth steps only)", "proxy_oauth_only", "peer_oauth_only"),
    ):
        a = (flows.get(mine) or {}).get("flows_per_second")
        b = (flows.get(peer) or {}).get("flows_per_second")
        if a is None or not b:
            continue
        out.append(
            _verdict(
                f"complete flows/s vs FastMCP{label}",
                round(a / b, 2),
                TARGETS["peer_ratio_min"],
                higher_is_better=True,
                unit="x",
            )
        )
    return out


def _verdict(
    name: str,
    value: float | None,
    limit: float,
    *,
    higher_is_better: bool,
    unit: str = "",
) -> Doc:
    if value is None:
        return {"target": name, "value": None, "limit": limit, "met": None}
    met = value >= limit if higher_is_better else value <= limit
    if higher_is_better:
        margin = f"{value / limit:.2f}x of the target" if limit else ""
    else:
        margin = f"{(limit - value) / limit * 100:+.0f}% headroom" if limit else ""
    return {
        "target": name,
        "value": value,
        "limit": limit,
        "met": met,
        "margin": margin + (f" ({unit})" if unit else ""),
    }


def table(doc: Doc) -> str:
    """The stdout report: one section per part of the document that is present."""
    lines = [
        *_endpoint_table(doc.get("endpoints", {})),
        *_redis_step_table(doc.get("redis_per_step", {})),
        *_flow_lines(doc.get("flows", {})),
        *_client_kind_table(doc),
        *_gateway_lines(doc.get("gateway", {})),
        *_memory_lines(doc.get("memory", {})),
        *_target_lines(doc.get("targets", [])),
        *_profile_lines(doc.get("profile")),
    ]
    return "\n".join(lines)


def _endpoint_table(endpoints: Doc) -> list[str]:
    header = (
        f"{'endpoint':<14}{'proxy r/s':>10}{'floor r/s':>10}{'ratio':>7}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'fl p50':>8}{'fl p99':>8}"
        f"{'cpu ms/r':>9}{'fl cpu':>8}{'RT/r':>6}{'cmd/r':>6}{'err':>5}"
        f"{'quiet r/s':>10}{'obs slower':>11}{'obs +cpu ms':>12}"
    )
    lines = [
        "",
        "Per-endpoint loops (same client, same concurrency, proxy vs floor;"
        " quiet = the proxy with audit, traces and metrics off)",
        header,
        "-" * len(header),
    ]
    for name, row in endpoints.items():
        p, f = row.get("proxy", {}), row.get("floor", {})
        q, cost = row.get("quiet", {}), row.get("observability") or {}
        redis_row = p.get("redis") or {}
        lines.append(
            f"{name:<14}{_f(p.get('per_second')):>10}{_f(f.get('per_second')):>10}"
            f"{_f(row.get('ratio'), 2):>7}{_f(p.get('p50_ms')):>8}"
            f"{_f(p.get('p99_ms')):>8}{_f(f.get('p50_ms')):>8}{_f(f.get('p99_ms')):>8}"
            f"{_f((p.get('cpu_ms_per_request') or {}).get('server'), 2):>9}"
            f"{_f((f.get('cpu_ms_per_request') or {}).get('server'), 2):>8}"
            f"{_f(redis_row.get('round_trips'), 2):>6}"
            f"{_f(redis_row.get('commands'), 1):>6}"
            f"{p.get('errors', 0):>5}"
            f"{_f(q.get('per_second')):>10}"
            f"{_percent(cost.get('slower')):>11}"
            f"{_f(cost.get('cpu_ms_added'), 3):>12}"
        )
    splits = [
        _split_text(name, row.get("worker_split")) for name, row in endpoints.items()
    ]
    if any(splits):
        lines.append(
            "keep-alive connections per worker (proxy, quiet, floor; reconnects"
            " until even): " + "; ".join(s for s in splits if s)
        )
    return lines


def _split_text(name: str, split: Doc | None) -> str:
    before = (split or {}).get("before")
    if not before:
        return ""
    parts = []
    for kind in ("proxy", "quiet", "floor"):
        counts = before.get(kind)
        parts.append("/".join(str(c) for c in counts) if counts else "?")
    return f"{name} {' '.join(parts)}"


def _redis_step_table(steps: Doc) -> list[str]:
    if not steps:
        return []
    lines = [
        "",
        "Redis work per request, each flow step measured alone (sequential flows)",
        f"{'step':<22}{'RT':>6}{'mean':>6}{'max':>5}{'cmds':>6}"
        "  commands per request (incl. inside Lua)",
    ]
    for name, row in steps.items():
        cmds = ", ".join(f"{k} {_f(v, 2)}" for k, v in row["by_command"].items())
        lines.append(
            f"{name:<22}{row['round_trips']:>6}"
            f"{_f(row.get('round_trips_mean'), 2):>6}"
            f"{row['round_trips_max']:>5}"
            f"{_f(row['commands'], 1):>6}  {cmds}"
        )
    return lines


def _flow_lines(flows: Doc) -> list[str]:
    lines = [
        "",
        "Complete flows (register > authorize > consent > upstream login > callback",
        "  > token > refresh [> MCP initialize + tools/call])",
    ]
    for who in ("proxy", "peer", "proxy_oauth_only", "peer_oauth_only"):
        row = flows.get(who) or {}
        if "skipped" in row:
            lines.append(f"  {who}: skipped: {row['skipped']}")
        elif row:
            lines += _flow_row(who, row)
    for mine, peer in (("proxy", "peer"), ("proxy_oauth_only", "peer_oauth_only")):
        a = (flows.get(mine) or {}).get("flows_per_second")
        b = (flows.get(peer) or {}).get("flows_per_second")
        if a and b:
            lines.append(f"  ratio {mine}/{peer}: {a / b:.2f}x")
    cost = flows.get("observability")
    if cost:
        lines.append(
            f"  observability (OAuth steps only, {cost['slices']} turns each): "
            f"on {_f(cost['flows_per_second_on'])} flows/s, "
            f"off {_f(cost['flows_per_second_off'])} flows/s, "
            f"{_percent(cost['slower'])} slower (failed: {cost['failed']})"
        )
        turns = cost.get("slower_per_turn")
        if turns:
            balance = _turn_balance(cost, 2 * len(turns))
            lines.append(
                "    slower per turn: "
                + ", ".join(_percent(x) for x in turns)
                + balance
            )
        if cost.get("cpu_more") is not None:
            lines.append(
                f"    proxy CPU per flow: on {cost['server_cpu_ms_per_flow_on']} ms, "
                f"off {cost['server_cpu_ms_per_flow_off']} ms, "
                f"{_percent(cost['cpu_more'])}"
            )
    return lines


def _flow_row(who: str, row: Doc) -> list[str]:
    """Throughput and flow latency, then per-step latency, then CPU shares."""
    peer_note = (
        f", FastMCP {row.get('fastmcp_version')}"
        f"{'' if row.get('with_mcp_call') else ' (no MCP call)'}"
        if who.startswith("peer")
        else ""
    )
    steps = "; ".join(
        f"{k} {_f(v['p50_ms'])}/{_f(v['p99_ms'])}"
        for k, v in row.get("steps", {}).items()
    )
    share = row.get("cpu_share", {})
    cpu = row.get("cpu_seconds", {})
    return [
        f"  {who}: {_f(row.get('flows_per_second'))} flows/s "
        f"({row.get('requests')} flows, {row.get('errors')} failed, "
        f"{_f(row.get('seconds'))} s), flow p50 {_f(row.get('p50_ms'))} ms, "
        f"p99 {_f(row.get('p99_ms'))} ms" + peer_note,
        "    step p50/p99 ms: " + steps,
        "    server CPU share: "
        + ", ".join(f"{k} {v * 100:.0f}%" for k, v in share.items())
        + f"; bench client {_f(cpu.get('bench_client'))} CPU-s",
    ]


#: Client kind -> its OAuth-only row in doc["flows"].
KIND_FLOWS = {
    "dcr": "proxy_oauth_only",
    "cimd": "proxy_cimd_oauth_only",
    "private_key_jwt": "proxy_private_key_jwt_oauth_only",
}


def _client_kind_table(doc: Doc) -> list[str]:
    """DCR, CIMD and private_key_jwt side by side: throughput, then per step its
    p50/p99 under load and its Redis round trips measured alone."""
    flows = doc.get("flows", {})
    kinds = {k: flows[row] for k, row in KIND_FLOWS.items() if flows.get(row)}
    if len(kinds) < 2:
        return []
    per_step = {
        "dcr": doc.get("redis_per_step", {}),
        **doc.get("redis_per_step_by_kind", {}),
    }
    fetches = doc.get("document_fetches", {})
    width = 24
    steps: list[str] = []
    for row in kinds.values():
        steps += [name for name in row.get("steps", {}) if name not in steps]

    def line(label: str, cells: list[str]) -> str:
        return f"{label:<20}" + "".join(f"{c:<{width}}" for c in cells)

    lines = [
        "",
        "Complete OAuth flows by client kind (no MCP call). dcr registers a public",
        "  client in each flow; cimd uses a URL client id whose document the proxy",
        "  caches; private_key_jwt's document names a jwks_uri and every token",
        "  request carries an RS256 assertion. p50/p99 ms under load; RT = Redis",
        "  round trips of the step measured alone (median of sequential flows)",
        line("", list(kinds)),
        line(
            "flows/s",
            [
                f"{_f(r.get('flows_per_second'))} ({r.get('errors')} failed)"
                for r in kinds.values()
            ],
        ),
        line(
            "flow p50/p99 ms",
            [f"{_f(r.get('p50_ms'))}/{_f(r.get('p99_ms'))}" for r in kinds.values()],
        ),
    ]
    for step in steps:
        cells = []
        for kind, row in kinds.items():
            lat = row.get("steps", {}).get(step)
            rt = (per_step.get(kind) or {}).get(step, {}).get("round_trips")
            cells.append(
                f"{_f(lat['p50_ms'])}/{_f(lat['p99_ms'])}  RT {_f(rt)}" if lat else "-"
            )
        lines.append(line(f"  {step}", cells))
    cells = []
    for kind, row in kinds.items():
        run = fetches.get(kind)
        here = row.get("document_fetches")
        cells.append(
            "-"
            if run is None
            else "+".join(str(n) for n in run.values())
            + f" ({sum((here or {}).values())} under load)"
        )
    lines.append(line("document fetches", cells))
    return lines


def _gateway_lines(gateway: Doc) -> list[str]:
    if not gateway:
        return []
    policed = gateway.get("policed", {})
    guarded = gateway.get("guarded", {})
    floor = gateway.get("floor", {})
    identity = gateway.get("identity_jwt_us", {})
    return [
        "",
        f"Gateway (sequential tools/call, {gateway.get('calls')} each): direct "
        f"p50/p99 {_f(gateway.get('direct_p50_ms'), 2)}/"
        f"{_f(gateway.get('direct_p99_ms'), 2)} ms, via gateway "
        f"{_f(gateway.get('gateway_p50_ms'), 2)}/"
        f"{_f(gateway.get('gateway_p99_ms'), 2)} ms, added "
        f"{_f(gateway.get('added_p50_ms'), 2)}/{_f(gateway.get('added_p99_ms'), 2)}"
        f" ms ({_f(gateway.get('over_floor_p50_ms'), 2)} ms p50 over the floor)",
        f"  floor relay (token check, one Redis round trip, relay): added "
        f"{_f(floor.get('added_p50_ms'), 2)}/{_f(floor.get('added_p99_ms'), 2)} ms",
        f"  identity per request, in-process, p50/p99 us: headers "
        f"{_f(identity.get('headers_p50_us'), 1)}/"
        f"{_f(identity.get('headers_p99_us'), 1)} back to back, "
        f"{_f(identity.get('headers_paused_p50_us'), 1)}/"
        f"{_f(identity.get('headers_paused_p99_us'), 1)} after a 1 ms wait; "
        f"signed JWT {_f(identity.get('jwt_p50_us'), 1)}/"
        f"{_f(identity.get('jwt_p99_us'), 1)} back to back, "
        f"{_f(identity.get('jwt_paused_p50_us'), 1)}/"
        f"{_f(identity.get('jwt_paused_p99_us'), 1)} after a 1 ms wait"
        " (as in a request)",
        f"  with tool policy + tool scopes: via gateway "
        f"{_f(policed.get('gateway_p50_ms'), 2)}/"
        f"{_f(policed.get('gateway_p99_ms'), 2)} ms, added "
        f"{_f(policed.get('added_p50_ms'), 2)}/{_f(policed.get('added_p99_ms'), 2)}"
        f" ms ({_f(policed.get('over_floor_p50_ms'), 2)} ms p50 over the floor)",
        f"  with tool policy + tool scopes + MCP_BACKEND_IDENTITY=jwt: via gateway "
        f"{_f(guarded.get('gateway_p50_ms'), 2)}/"
        f"{_f(guarded.get('gateway_p99_ms'), 2)} ms, added "
        f"{_f(guarded.get('added_p50_ms'), 2)}/{_f(guarded.get('added_p99_ms'), 2)}"
        f" ms ({_f(guarded.get('over_floor_p50_ms'), 2)} ms p50 over the floor)",
        f"  SSE event arrivals (ms): direct {gateway.get('sse_direct_arrivals_ms')}"
        f", gateway {gateway.get('sse_gateway_arrivals_ms')}; unbuffered: "
        f"{gateway.get('sse_unbuffered')}",
    ]


def _memory_lines(memory: Doc) -> list[str]:
    if not memory:
        return []
    c, g = memory.get("client", {}), memory.get("grant", {})
    lines = [
        "",
        f"Redis memory ({memory.get('count')} each): per client "
        f"{_f(c.get('bytes_per_client'), 0)} B (MEMORY USAGE sample "
        f"{c.get('memory_usage_sample_bytes')} B); per live grant "
        f"{_f(g.get('bytes_per_grant'), 0)} B (sample "
        f"{g.get('memory_usage_sample_bytes')} B, real-flow grant "
        f"{g.get('memory_usage_real_flow_grant_bytes')} B, {g.get('encoding')})",
    ]
    if g.get("field_bytes_sample"):
        lines.append(
            "  grant field bytes: "
            + ", ".join(f"{k} {v}" for k, v in g["field_bytes_sample"].items())
        )
    return lines


def _target_lines(verdicts: list[Doc]) -> list[str]:
    if not verdicts:
        return []
    lines = ["", "Targets"]
    for v in verdicts:
        mark = {True: "MET ", False: "MISS", None: "n/a "}[v["met"]]
        lines.append(
            f"  [{mark}] {v['target']}: {_f(v['value'], 2)} "
            f"(target {'>=' if 'vs' in v['target'] else '<='} {v['limit']}) "
            f"{v.get('margin', '')}"
        )
    return lines


def _profile_lines(profile: Doc | None) -> list[str]:
    """Per profiled phase: proxy functions by inclusive share, all by self share."""
    if not profile:
        return []
    lines = ["", f"Profile (py-spy, proxy workers; files in {profile.get('files')})"]
    for phase, data in profile.items():
        if not isinstance(data, dict) or "inclusive_pct" not in data:
            continue
        lines.append(
            f"  {phase}: {data['samples']} GIL-holding samples; "
            "proxy functions by inclusive %:"
        )
        lines += [f"    {pct:5.1f}  {name}" for name, pct in data["inclusive_pct"][:18]]
        lines.append("   top self %:")
        lines += [f"    {pct:5.1f}  {name}" for name, pct in data["self_pct"][:10]]
    return lines


def _turn_balance(cost: dict[str, t.Any], turns: int) -> str:
    """How the observability turns' connections fell on the workers."""
    uneven, unknown = cost.get("uneven_turns"), cost.get("unknown_splits") or 0
    if uneven is None:
        return ""
    if unknown:
        return f" ({unknown} of {turns} turns with the split unknown: no ss)"
    return f" ({uneven} of {turns} turns on an uneven split)"
