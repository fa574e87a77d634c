"""The targets of issue #5, in one place."""

from __future__ import annotations

TARGETS = {
    "floor_ratio_min": 0.5,
    "peer_ratio_min": 5.0,
    "round_trips_max": 2,
    "client_bytes_max": 1024,
    "grant_bytes_max": 2048,
    "gateway_added_p50_ms_max": 2.0,
}
