"""contrib/: the alert rules and the Grafana dashboard use only what the daemon exports,
and each rule says which runbook section to open."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.monitoring import ServedDaemon

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "breezeway-daemon.rules.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "breezeway-daemon.json"
RUNBOOK = ROOT / "tests" / "data" / "RUNBOOK.md"
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, labels and strings left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, regexes
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        followed = text[match.end() :].lstrip()
        if not followed.startswith("(") and match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def runbook_headings() -> list[tuple[int, str]]:
    return [
        (len(hashes), title.strip())
        for hashes, title in re.findall(r"^(#{2,4}) (.+)$", RUNBOOK.read_text(), re.MULTILINE)
    ]


def section_exists(path: str) -> bool:
    """``"Alert Response > 🚨 FAILURE ALERT > C. Token Error"``: each heading under the last."""
    headings = runbook_headings()
    wanted = [part.strip() for part in path.split(" > ")]
    position, level = 0, 1
    for title in wanted:
        for index in range(position, len(headings)):
            if headings[index][0] <= level and index > position:
                return False  # left the section without finding it
            if headings[index] == (level + 1, title):
                position, level = index, level + 1
                break
        else:
            return False
    return True


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard["templating"]["list"]:
        definition = variable.get("definition", "")
        if definition.startswith("label_values("):
            queries.append(definition.removeprefix("label_values(").rsplit(",", 1)[0])
    return queries


def test_the_name_extraction_finds_metrics_and_only_metrics() -> None:
    expr = (
        'sum by (region) (increase(breezeway_runs_total{outcome=~"success|failed"}[24h])) '
        '/ on (region) group_left max(up{job="$job"}) > 0.01 and absent(foo_bar) or time()'
    )
    assert metric_names(expr) == {"breezeway_runs_total", "up", "foo_bar"}
    assert section_exists("Alert Response > 🚨 FAILURE ALERT > C. Token Error")
    assert not section_exists("Alert Response > C. Token Error")
    assert not section_exists("Common Issues > C. Token Error")


async def test_every_alert_rule_and_dashboard_query_uses_only_exported_metrics(
    served_daemon,
) -> None:
    # The webhook receiver on, so that its families are exported too (the pending count
    # from the first probe after the receiver started).
    daemon: ServedDaemon = await served_daemon(
        webhook_secret="fake-webhook-secret-for-tests-0123456789", health_probe_s=1
    )
    scrape = await daemon.until_scraped(
        lambda scrape: scrape.value("breezeway_webhook_events_pending") is not None
    )
    exported = scrape.names()

    for rule in rules():
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)

    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    assert len(queries) > 25
    for query in queries:
        used = metric_names(query)
        assert used, query
        assert used <= exported, (query, used - exported)


def test_the_rules_encode_the_runbooks_thresholds_and_name_its_sections() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    expected = {
        "BreezewayHourlyPairStale": ('schedule="hourly"', "> 2 * 3600"),
        "BreezewayDailyPairStale": ('schedule="daily"', "> 25 * 3600"),
        "BreezewayRunFailed": ('outcome="failed"', "> 0"),
        "BreezewayRunStuck": ("breezeway_watchdog_reaped_runs_total", "> 0"),
        "BreezewayTokenFailures": ('outcome="failed"', "breezeway_token_renewals_total"),
        "BreezewayRateLimited": ("breezeway_api_rate_limited_total", "> 0"),
    }
    for name, fragments in expected.items():
        assert name in by_name, name
        for fragment in fragments:
            assert fragment in by_name[name]["expr"], (name, fragment)
    assert by_name["BreezewayRateLimited"]["for"] == "30m"  # sustained, not one 429
    for rule in by_name.values():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert section_exists(annotations["runbook"]), (rule["alert"], annotations["runbook"])
        assert rule["labels"]["severity"] in ("warning", "critical")


def test_the_dashboard_is_provisioning_ready_with_one_row_per_concern() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["id"] is None and dashboard["uid"] == "breezeway-daemon"
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    concerns = (
        "Freshness",
        "Failures",
        "Durations",
        "API usage",
        "Records",
        "Webhooks",
        "Database",
    )
    for concern in concerns:
        assert any(title.startswith(concern) for title in rows), concern
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == datasource, panel["title"]
            assert all(target["datasource"] == datasource for target in panel["targets"])
    names = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "region"} <= names


@pytest.mark.parametrize("path", [RULES, DASHBOARD], ids=["rules", "dashboard"])
def test_no_query_reads_an_id_or_url_label(path: Path) -> None:
    """Labels stay bounded: nothing groups or filters by a run id, record id or URL."""
    text = path.read_text()
    assert not re.search(r"\b(run_id|id|url|endpoint|path)\s*[=~!]", text)
