"""Companies and agents pages over plain HTTP: forms, validation errors next to their field,
the FAQ documents editor, secret agent settings, roles and escaping."""

from __future__ import annotations

import re

from buzzi import clock
from buzzi.models import Agent, Company
from tests.admin.helpers import call, company_admin
from tests.dashboard.client import DashboardClient
from tests.dashboard.forms import create_agent, create_company, create_whatsapp, field_error, webhook_path
from tests.support.gateway import RunningGateway

XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


async def test_company_list_shows_subscription_and_expiry_badges(owner: DashboardClient, gw) -> None:
    await create_company(owner, "Trial Co", status="trialing", expiresAt="2099-01-31")
    soon = clock.iso(clock.now() + 3 * 86400)[:10]
    await create_company(owner, "Soon Co", status="active", expiresAt=soon)
    await create_company(owner, "Late Co", status="past_due", expiresAt="2020-05-01")
    page = await owner.get("/admin/companies")
    rows = {name: row for row in re.findall(r"<tr>(.*?)</tr>", page.text, re.S)
            for name in ("Trial Co", "Soon Co", "Late Co") if name in row}
    assert 'badge-trialing">trialing' in rows["Trial Co"] and "until 2099-01-31" in rows["Trial Co"]
    assert f'badge-expiring">expires {soon}' in rows["Soon Co"]
    assert 'badge-past_due">past due' in rows["Late Co"] and 'badge-expired">expired 2020-05-01' in rows["Late Co"]
    stored = await gw.store.find_one(Company, name="Trial Co")
    assert stored.subscription_status == "trialing" and clock.iso(stored.subscription_expires_at)[:10] == "2099-01-31"


async def test_company_form_errors_are_shown_next_to_the_field(owner: DashboardClient) -> None:
    page = await owner.post("/admin/companies", {"name": "", "status": "active", "expiresAt": ""})
    assert page.status == 400 and field_error(page, "name") == "must not be empty"
    page = await owner.post("/admin/companies", {"name": "Bad date", "status": "active", "expiresAt": "soon"})
    assert page.status == 400 and "ISO-8601" in (field_error(page, "subscription.expiresAt") or "")
    assert 'value="Bad date"' in page.text  # what was typed stays in the form


async def test_owner_edits_and_deletes_a_company(owner: DashboardClient, gw) -> None:
    cid = await create_company(owner, "Old name")
    edit = await owner.get(f"/admin/companies/{cid}/edit")
    assert 'value="Old name"' in edit.text and 'name="status"' in edit.text
    saved = await owner.post(f"/admin/companies/{cid}", {"name": "New name", "status": "canceled", "expiresAt": ""})
    assert saved.status == 200 and "Saved." in saved.text and "New name" in saved.text
    assert (await gw.store.get(Company, cid)).subscription_status == "canceled"
    gone = await owner.post(f"/admin/companies/{cid}/delete")
    assert "Deleted." in gone.text and await gw.store.get(Company, cid) is None


async def test_company_admin_sees_only_their_company_and_no_owner_controls(
        owner: DashboardClient, clients, gw: RunningGateway) -> None:
    mine, theirs = await create_company(owner, "Mine"), await create_company(owner, "Theirs")
    token = await company_admin(gw, await gw.login(), mine, "boss@mine.example")
    admin = clients()
    await admin.login("boss@mine.example", "company-pass-123")
    listing = await admin.get("/admin/companies")
    assert "Mine" in listing.text and "Theirs" not in listing.text and "New company" not in listing.text
    assert (await admin.get("/admin/companies/new")).status == 403
    assert (await admin.post("/admin/companies", {"name": "Sneaky"})).status == 403
    edit = await admin.get(f"/admin/companies/{mine}/edit")
    assert edit.status == 200 and 'name="status"' not in edit.text  # subscriptions are the owner's
    # A forged subscription field is ignored; the rename goes through.
    renamed = await admin.post(f"/admin/companies/{mine}", {"name": "Mine Renamed", "status": "active",
                                                           "expiresAt": "2099-01-01"})
    assert renamed.status == 200 and "Mine Renamed" in renamed.text
    company = await gw.store.get(Company, mine)
    assert company.name == "Mine Renamed" and company.subscription_expires_at is None
    assert (await admin.post(f"/admin/companies/{mine}/delete")).status == 403
    assert (await call(gw, "GET", f"/api/admin/companies/{theirs}", token, expect=404))


async def test_agent_form_edits_faq_documents_as_rows(owner: DashboardClient, gw) -> None:
    cid = await create_company(owner)
    new = await owner.get(f"/admin/companies/{cid}/agents/new")
    assert 'name="doc-0-title"' in new.text and 'id="doc-row-template"' in new.text
    aid = await create_agent(owner, cid, "Docs bot", **{
        "doc-0-title": "Hours", "doc-0-content": "9 to 5", "doc-1-title": "", "doc-1-content": "",
        "doc-2-title": "Returns", "doc-2-content": "Within 30 days", "fallback": "Ask a human",
        "allowedOrigins": "https://shop.example\nhttps://www.shop.example"})
    agent = await gw.store.get(Agent, aid)
    assert agent.settings["documents"] == [{"title": "Hours", "content": "9 to 5"},
                                           {"title": "Returns", "content": "Within 30 days"}]
    assert agent.settings["fallback"] == "Ask a human"
    assert agent.allowed_origins == ["https://shop.example", "https://www.shop.example"]
    detail = await owner.get(f"/admin/companies/{cid}/agents/{aid}")
    assert "2: Hours, Returns" in detail.text and "https://www.shop.example" in detail.text
    edit = await owner.get(f"/admin/companies/{cid}/agents/{aid}/edit")
    assert 'name="doc-1-title" data-name="title" value="Returns"' in edit.text
    # Removing the first row: the rows left are renumbered by the browser, or sent with gaps.
    saved = await owner.post(f"/admin/companies/{cid}/agents/{aid}", {
        "name": "Docs bot", "kind": "faq", "status": "inactive", "doc-1-title": "Returns",
        "doc-1-content": "Within 30 days", "allowedOrigins": ""})
    assert saved.status == 200 and "Saved." in saved.text
    agent = await gw.store.get(Agent, aid)
    assert agent.settings["documents"] == [{"title": "Returns", "content": "Within 30 days"}]
    assert agent.status == "inactive" and agent.allowed_origins == []


async def test_agent_validation_errors_name_the_field(owner: DashboardClient, gw) -> None:
    cid = await create_company(owner)
    page = await owner.post(f"/admin/companies/{cid}/agents", {
        "name": "Bot", "kind": "faq", "status": "active", "doc-0-title": "Hours", "doc-0-content": " ",
        "allowedOrigins": ""})
    assert page.status == 400 and field_error(page, "settings.documents[0].content") == "must be a non-empty string"
    assert 'value="Hours"' in page.text
    page = await owner.post(f"/admin/companies/{cid}/agents", {**_faq("Bot"), "allowedOrigins": "not an origin"})
    assert page.status == 400 and "must be an origin" in (field_error(page, "allowedOrigins") or "")
    page = await owner.post(f"/admin/companies/{cid}/agents", {
        "name": "Llm", "kind": "openai", "status": "active", "baseUrl": "ftp://x", "model": "m", "apiKey": "k",
        "allowedOrigins": ""})
    assert page.status == 400 and field_error(page, "settings.baseUrl")
    assert await gw.store.find(Agent, company_id=cid) == []


def _faq(name: str) -> dict[str, str]:
    return {"name": name, "kind": "faq", "status": "active", "doc-0-title": "T", "doc-0-content": "C"}


async def test_agent_api_key_is_never_rendered_and_kept_when_left_blank(owner: DashboardClient, gw) -> None:
    cid = await create_company(owner)
    api_key = "sk-live-very-secret-key-123456"
    aid = await create_agent(owner, cid, "Llm", kind="openai", baseUrl="https://llm.example/v1", model="gpt-x",
                             apiKey=api_key, temperature="0.5")
    for path in (f"/admin/companies/{cid}/agents/{aid}", f"/admin/companies/{cid}/agents/{aid}/edit"):
        page = await owner.get(path)
        assert page.status == 200 and api_key not in page.text and "gpt-x" in page.text
    await owner.post(f"/admin/companies/{cid}/agents/{aid}", {
        "name": "Llm", "kind": "openai", "status": "active", "baseUrl": "https://llm.example/v1",
        "model": "gpt-y", "apiKey": "", "allowedOrigins": ""})
    agent = await gw.store.get(Agent, aid)
    assert agent.settings["apiKey"] == api_key and agent.settings["model"] == "gpt-y"


async def test_names_are_escaped_everywhere(owner: DashboardClient, gw) -> None:
    cid = await create_company(owner, XSS)
    aid = await create_agent(owner, cid, XSS, **{"doc-0-title": XSS, "fallback": XSS})
    wid, created = await create_whatsapp(owner, cid, aid)
    pages = [created] + [await owner.get(path) for path in (
        "/admin/companies", f"/admin/companies/{cid}", f"/admin/companies/{cid}/edit",
        f"/admin/companies/{cid}/agents/{aid}", f"/admin/companies/{cid}/agents/{aid}/edit",
        f"/admin/companies/{cid}/agents/{aid}/webhooks/new", webhook_path(cid, aid, wid),
        webhook_path(cid, aid, wid) + "/deliveries")]
    for page in pages:
        assert page.status in (200, 201), page.url
        assert XSS not in page.text, page.url
        assert ESCAPED in page.text, page.url


async def test_agent_delete_takes_its_webhooks(owner: DashboardClient, gw) -> None:
    cid = await create_company(owner)
    aid = await create_agent(owner, cid)
    await create_whatsapp(owner, cid, aid)
    page = await owner.post(f"/admin/companies/{cid}/agents/{aid}/delete")
    assert page.url.split("?")[0].endswith(f"/admin/companies/{cid}") and "No agents yet" in page.text
    assert await gw.store.get(Agent, aid) is None
