"""The API is on the dashboard and in docker-compose, with its own secret."""

from __future__ import annotations

import json
import re

import yaml

from oddsflow.api.settings import DEV_JWT_SECRET
from oddsflow.settings import REPO_ROOT


def test_dashboard_plots_the_api_metrics() -> None:
    panels = json.loads((REPO_ROOT / "deploy/grafana/dashboards/oddsflow.json").read_text())[
        "panels"
    ]
    exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    used = set(re.findall(r"\boddsflow_api_[a-z_]+", exprs))
    assert {
        "oddsflow_api_requests_total",
        "oddsflow_api_request_duration_seconds_bucket",
        "oddsflow_api_placements_in_flight",
        "oddsflow_api_shed_total",
        "oddsflow_api_rate_limited_total",
        "oddsflow_api_ws_connections",
        "oddsflow_api_ws_messages_sent_total",
        "oddsflow_api_ws_messages_dropped_total",
    } <= used


def test_compose_runs_the_api_with_a_secret_of_its_own() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    api = compose["services"]["api"]
    assert api["command"][0] == "api"
    secret = api["environment"]["ODDSFLOW_API_JWT_SECRET"]
    assert secret.startswith("${") and DEV_JWT_SECRET not in secret
    assert "ODDSFLOW_ENV" not in api["environment"]
    prom = yaml.safe_load((REPO_ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [
        t
        for job in prom["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    ]
    assert "api:8080" in targets
