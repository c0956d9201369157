"""The edge's request metrics: what Prometheus scrapes, under Litestar's metric names."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest

from ecard.edge import SERIES, EdgeMiddleware, _Series, _SeriesCollector


def scrape(series: _Series) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(_SeriesCollector(series))
    lines = generate_latest(registry).decode().splitlines()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in lines if not line.startswith("#"))
    }


def test_counts_errors_durations_and_requests_in_flight_per_route_and_status() -> None:
    series = _Series()
    series.start("POST", "/codes")
    series.start("POST", "/codes")
    series.finish("POST", "/codes", 201, 0.003)
    series.start("GET", "/x")
    series.finish("GET", "/x", 503, 0.2)
    metrics = scrape(series)

    created = 'app_name="ecard",method="POST",path="/codes",status_code="201"'
    failed = 'app_name="ecard",method="GET",path="/x",status_code="503"'
    assert metrics[f"litestar_requests_total{{{created}}}"] == 1
    assert f"litestar_requests_error_total{{{created}}}" not in metrics
    assert metrics[f"litestar_requests_error_total{{{failed}}}"] == 1
    assert (
        metrics['litestar_requests_in_progress{app_name="ecard",method="POST",path="/codes"}'] == 1
    )
    assert metrics['litestar_requests_in_progress{app_name="ecard",method="GET",path="/x"}'] == 0
    # buckets are cumulative: 3 ms is under every bound from 5 ms; 200 ms only from 250 ms
    assert (
        metrics[
            'litestar_request_duration_seconds_bucket{app_name="ecard",le="0.005",method="POST",path="/codes",status_code="201"}'
        ]
        == 1
    )
    assert (
        metrics[
            'litestar_request_duration_seconds_bucket{app_name="ecard",le="0.1",method="GET",path="/x",status_code="503"}'
        ]
        == 0
    )
    assert (
        metrics[
            'litestar_request_duration_seconds_bucket{app_name="ecard",le="0.25",method="GET",path="/x",status_code="503"}'
        ]
        == 1
    )
    assert (
        metrics[
            'litestar_request_duration_seconds_bucket{app_name="ecard",le="+Inf",method="GET",path="/x",status_code="503"}'
        ]
        == 1
    )
    assert metrics[f"litestar_request_duration_seconds_sum{{{failed}}}"] == 0.2


def test_a_request_that_raises_is_counted_as_a_500_and_leaves_the_flight() -> None:
    async def broken(scope: dict, receive: object, send: object) -> None:
        raise RuntimeError("boom")

    async def run() -> None:
        edge = EdgeMiddleware()(broken)
        try:
            await edge(
                {
                    "type": "http",
                    "method": "GET",
                    "path": "/boom",
                    "path_template": "/boom",
                    "headers": [],
                },
                None,
                None,
            )
        except RuntimeError:
            pass

    before = SERIES.done.get(("GET", "/boom", 500))
    asyncio.run(run())
    assert SERIES.done[("GET", "/boom", 500)].errors == (before.errors if before else 0) + 1
    assert SERIES.running[("GET", "/boom")] == 0
