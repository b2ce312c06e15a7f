"""The Grafana dashboard only plots metrics that the code exports."""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY

import oddsflow.api.metrics  # registers the API metrics
import oddsflow.metrics  # registers the worker metrics
import oddsflow.sinks.metrics  # noqa: F401 - registers the sink metrics
from oddsflow.settings import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "oddsflow.json"


def _exported() -> set[str]:
    # Sample names each family can export (a labelled family has no samples until used).
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "gauge": ("",),
        "summary": ("_count", "_sum", ""),
    }
    return {
        f"{metric.name}{suffix}"
        for metric in REGISTRY.collect()
        for suffix in suffixes.get(metric.type, ("",))
    }


def test_every_dashboard_query_uses_an_exported_metric():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exported = _exported()
    used = {
        name
        for p in panels
        for t in p.get("targets", [])
        for name in re.findall(r"\boddsflow_[a-z_]+", t["expr"])
    }
    assert len(used) >= 8
    # Histograms and counters export *_bucket / *_total samples; a name no longer exported
    # (a renamed metric) would leave an empty panel on a cup-final night.
    missing = used - exported
    assert not missing, missing
