"""Operations endpoints (docs/contract.md §5) on an in-process gateway."""

from __future__ import annotations

from tests.support.gateway import running_gateway


async def test_health_ready_metrics_and_json_404(make_settings):
    async with running_gateway(make_settings) as gw:
        status, body, _ = await gw.request("GET", "/healthz")
        assert status == 200 and body["status"] == "ok"
        status, body, _ = await gw.request("GET", "/readyz")
        assert status == 200 and body["checks"] == {"store": "ok", "broker": "ok"}
        status, body, _ = await gw.request("GET", "/nope")
        assert (status, body) == (404, {"error": "Not found"})
        status, text, headers = await gw.request("GET", "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert 'buzzi_http_requests_total{method="GET",route="HealthHandler",status="200"} 1.0' in text
        assert "buzzi_http_request_duration_seconds_bucket" in text
        assert "buzzi_sse_streams_open 0.0" in text

        await gw.gateway.store.close()  # the store goes away
        status, body, _ = await gw.request("GET", "/readyz")
        assert status == 503 and body["checks"]["store"].startswith("error")
        assert body["checks"]["broker"] == "ok"
        await gw.gateway.store.open()
