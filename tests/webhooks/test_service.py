"""The daemon's webhook service: the silence warning and the status section."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from breezeway_daemon.alerts import Alerts
from breezeway_daemon.status import webhooks_section
from breezeway_daemon.webhooks.service import WebhookService

from support.webhooks import SECRET, Hooks, served_app


def daemon_of(hooks: Hooks) -> SimpleNamespace:
    return SimpleNamespace(settings=hooks.settings, pool=hooks.pool, ctx=hooks.ctx, http=None,
                           alerts=Alerts(hooks.settings, hooks.pool))  # fmt: skip


async def test_a_subscribed_region_without_events_gets_a_warning(hooks: Hooks) -> None:
    service = WebhookService(daemon_of(hooks))
    async with served_app(hooks.app) as base:
        company = hooks.sim.companies[0]
        await hooks.sim.webhooks.subscribe(company, "task", f"{base}/webhooks/{SECRET}/task")
    assert await service.check_silence() == []  # just started
    service.started_at -= timedelta(hours=hooks.settings.webhook_silence_hours + 1)
    assert await service.check_silence() == ["region_1"]  # region_2 has no subscription
    row = await hooks.pool.fetchrow("SELECT kind, region_code, entity_type, subject "
                                    "FROM breezeway.alert_history")  # fmt: skip
    assert (row["kind"], row["region_code"], row["entity_type"]) == (
        "warning",
        "region_1",
        "webhooks",
    )
    assert "no webhook event" in row["subject"]
    log_text = hooks.settings.alerts_log_path.read_text()
    assert "webhooks subscribe region_1" in log_text and SECRET not in log_text
    # An event arriving ends the silence.
    truth = hooks.sim.truth(company.company_id, "tasks")
    await hooks.post("task", hooks.task_event(truth[min(truth)]))
    assert await service.check_silence() == []


async def test_status_shows_each_regions_last_event_and_queue(hooks: Hooks) -> None:
    assert (
        await webhooks_section(
            hooks.pool, hooks.settings.model_copy(update={"webhook_secret": None})
        )
        == ""
    )
    truth = hooks.sim.truth(hooks.sim.companies[0].company_id, "tasks")
    await hooks.post("task", hooks.task_event(truth[min(truth)]))
    text = await webhooks_section(hooks.pool, hooks.settings)
    lines = {line.split()[0]: line.split() for line in text.strip().splitlines()}
    assert lines["region_1"][-3:] == ["1", "0", "0"]  # pending, failed, rejected
    assert lines["region_2"][1] == "never"
    await hooks.apply_all()
    text = await webhooks_section(hooks.pool, hooks.settings)
    assert [line.split()[-3] for line in text.splitlines() if line.startswith("region_1")] == ["0"]
    assert SECRET not in text


async def test_the_secret_is_in_no_bundle(hooks: Hooks, tmp_path) -> None:
    import tarfile

    from breezeway_daemon import bundle

    truth = hooks.sim.truth(hooks.sim.companies[0].company_id, "tasks")
    await hooks.post("task", hooks.task_event(truth[min(truth)]))
    await hooks.post("task", b"not json", secret=SECRET)
    out = tmp_path / "bundle.tar.gz"
    await bundle.build(hooks.pool, hooks.settings, out)
    with tarfile.open(out) as tar:
        for member in tar.getmembers():
            if member.isfile():
                assert SECRET.encode() not in tar.extractfile(member).read(), member.name
