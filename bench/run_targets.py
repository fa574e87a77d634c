"""The benchmark targets (issues #5, #10, #12), in one place."""

from __future__ import annotations

TARGETS = {
    "floor_ratio_min": 0.5,
    "peer_ratio_min": 5.0,
    # Issue #5 set 2 for the protocol's own reads and writes; issue #12's rate
    # limits add one round trip to every limited request (all its buckets in
    # one pipeline), and the gateway's stream slots one more pair for calls
    # that may stream, folded into 3 by sharing the grant check's trip.
    "round_trips_max": 3,
    "client_bytes_max": 1024,
    "grant_bytes_max": 2048,
    "gateway_added_p50_ms_max": 2.0,
    # Issue #10: audit trail, flow traces and metrics cost at most 10 % of an
    # endpoint's throughput, and no Redis round trip on token and gateway.
    "observability_slower_max": 0.10,
    "observability_extra_round_trips_max": 0.05,
}
