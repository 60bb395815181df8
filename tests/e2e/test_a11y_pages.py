"""Accessibility of every page: axe-core scan, phone reflow and screenshots, in FR and EN.

One server and one set of boards (an event of five ateliers, one per phase, plus a frozen one)
serve every page of the app. Each page is opened in the phone, laptop and projector viewports,
in French and in English: shot whole (test-artifacts/a11y-{page}-{viewport}-{lang}.png),
scanned by axe-core (WCAG 2.0/2.1 A and AA rules) and, on the phone, checked not to scroll
sideways. A page fails on any `serious` or `critical` violation; every violation of every page
is written to test-artifacts/axe-results.json and axe-results.md.

To keep the suite under three minutes, axe scans the French page in the three viewports and the
English one on the laptop only (colours and layout are shared, the words are what change), plus
the laptop French page once more with every <details> unfolded (forms folded away by default).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from playwright.sync_api import Error as PlaywrightError

from tests.conftest import ROOT, LiveServer
from tests.e2e.conftest import LAPTOP, PHONE, PROJECTOR
from tests.e2e.test_live_board import LIVE, api_participant, api_post_card, expect_live

pytestmark = pytest.mark.e2e

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("critical", "serious")
IMPACTS = ("critical", "serious", "moderate", "minor")
VIEWPORTS: dict[str, dict[str, Any]] = {"phone": PHONE, "laptop": LAPTOP, "projector": PROJECTOR}
LANGS = {"fr": "fr-FR", "en": "en-GB"}
TEMPLATE = "constats-enjeux-besoins"

EVENT_TITLE = "Journées des transitions territoriales"
# The ateliers of the day (vocabulary of /work/shared/seeds): title, question, cards by column.
ATELIERS: dict[str, dict[str, Any]] = {
    "collecte": {
        "title": "Gouvernance et coopération interacteurs",
        "question": "Comment mobiliser des acteurs et des ressources « dispersés » ?",
        "slot": "9h30", "room": "Salle Jean Jaurès", "anonymous": False,
        "cards": [("Constats", "Les coopérations intercommunales restent fragiles"),
                  ("Constats", "Beaucoup de réunions, peu de décisions partagées"),
                  ("Enjeux", "Articuler les dynamiques locales et régionales"),
                  ("Besoins", "Une charte de gouvernance partagée entre élu·es et habitants")],
    },
    "regroupement": {
        "title": "Ressources financières au service du pouvoir d'agir local",
        "question": "Quels modèles économiques pour les initiatives citoyennes ?",
        "slot": "11h00", "room": "Salle des fêtes", "anonymous": True,
        "cards": [("Constats", "Des tiers-lieux très dépendants des subventions"),
                  ("Constats", "Des appels à projets trop courts pour les associations"),
                  ("Enjeux", "Hybrider les ressources : ventes, services, adhésions"),
                  ("Besoins", "Un fonds d'amorçage régional")],
        "themes": {"Constats": ("Dépendance aux financements publics", [0, 1])},
    },
    "vote": {
        "title": "Développement de l'agir citoyen",
        "question": "Comment faire vivre le pouvoir d'agir des habitants ?",
        "slot": "14h00", "room": "Médiathèque", "anonymous": True,
        "cards": [("Constats", "Toujours les mêmes personnes mobilisées"),
                  ("Constats", "Des habitants qui ne se sentent pas légitimes"),
                  ("Enjeux", "Aller vers les publics éloignés"),
                  ("Besoins", "Des temps d'échange en soirée")],
        "themes": {"Constats": ("Mobilisation des habitants", [0, 1])},
    },
    "restitution": {
        "title": "Animer et faciliter les dynamiques territoriales",
        "question": "Quelle posture de facilitateur d'innovation territoriale ?",
        "slot": "15h30", "room": "Salle du conseil", "anonymous": True,
        "cards": [("Constats", "Prise de conscience de la nécessité de changer de cadre"),
                  ("Enjeux", "Accompagner l'innovation sur le territoire"),
                  ("Besoins", "Un réseau régional de facilitateurs")],
    },
    "frozen": {
        "title": "Tiers-lieux et coopération territoriale",
        "question": "Comment les tiers-lieux renforcent-ils les coopérations locales ?",
        "slot": "15h30", "room": "Tiers-lieu La Fabrique", "anonymous": True,
        "cards": [("Constats", "Des tiers-lieux isolés les uns des autres"),
                  ("Enjeux", "Mutualiser l'ingénierie entre territoires"),
                  ("Besoins", "Un poste d'animateur financé sur trois ans")],
        "notes": {"Constats": "- Des lieux **isolés**\n- Une ingénierie inégalement répartie"},
        "conclusion": "Créer une coopérative de tiers-lieux à l'échelle régionale.",
    },
}


# --- the data set, made once per module through the JSON API --------------------------------


@dataclass
class Site:
    server: LiveServer
    event: dict[str, Any]
    boards: dict[str, dict[str, Any]]  # by phase key of ATELIERS
    participants: dict[str, str]  # phase key -> token of a participant who joined
    slug: str  # the frozen atelier's synthesis permalink

    @property
    def url(self) -> str:
        return self.server.url

    def code(self, key: str) -> str:
        code: str = self.boards[key]["join_code"]
        return code


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _call(method: str, url: str, token: str | None = None, **kwargs: Any) -> Any:
    response = httpx.request(method, url, headers=_auth(token) if token else None,
                             timeout=30, **kwargs)
    assert response.status_code in (200, 201), f"{method} {url}: {response.text}"
    return response.json()


def _build_site(server: LiveServer) -> Site:
    base = f"{server.url}/api/v1"
    event = _call("POST", f"{base}/events", json={"title": EVENT_TITLE})
    boards: dict[str, dict[str, Any]] = {}
    participants: dict[str, str] = {}
    for key, spec in ATELIERS.items():
        board = _call("POST", f"{base}/events/{event['id']}/boards", event["organiser_token"],
                      json={"title": spec["title"], "question": spec["question"],
                            "template": TEMPLATE, "anonymous": spec["anonymous"],
                            "slot": spec["slot"], "room": spec["room"],
                            "animator_name": "Claire Dubois"})
        boards[key] = board
        code, token = board["join_code"], board["animator_token"]
        cols = {c["title"]: c["id"] for c in board["columns"]}
        people = [api_participant(server, code, name)
                  for name in ("Camille", "Yanis", "Maëlle", "Jean-Pierre")]
        participants[key] = people[0]
        cards = [api_post_card(server, code, people[i % len(people)], cols[column], text)
                 for i, (column, text) in enumerate(spec["cards"])]
        for column, (title, members) in spec.get("themes", {}).items():
            theme = _call("POST", f"{base}/boards/{code}/themes", token,
                          json={"column_id": cols[column], "title": title})
            for i in members:
                _call("PATCH", f"{base}/boards/{code}/cards/{cards[i]['id']}", token,
                      json={"theme_id": theme["id"]})
        if key == "collecte":
            continue
        if key == "regroupement":
            _call("PATCH", f"{base}/boards/{code}", token, json={"phase": "regroupement"})
            continue
        _call("PATCH", f"{base}/boards/{code}", token, json={"phase": "vote"})
        # Everyone but the first participant spends their three dots; the first keeps two, so
        # their ballot shows both a dot placed and dots left.
        for n, person in enumerate(people):
            for k in range(1 if n == 0 else 3):
                _call("POST", f"{base}/boards/{code}/votes", person,
                      json={"card_id": cards[min(k + n, len(cards) - 1) % len(cards)]["id"]})
        _call("PATCH", f"{base}/boards/{code}", token, json={"results_visible": True})
        if key == "vote":
            continue
        _call("PATCH", f"{base}/boards/{code}", token, json={"phase": "restitution"})
    frozen = boards["frozen"]
    cols = {c["title"]: c["id"] for c in frozen["columns"]}
    notes = {str(cols[c]): text for c, text in ATELIERS["frozen"]["notes"].items()}
    version = _call("POST", f"{base}/boards/{frozen['join_code']}/freeze",
                    frozen["animator_token"],
                    json={"notes": notes, "conclusion": ATELIERS["frozen"]["conclusion"]})
    slug = re.search(r"/s/([A-Za-z0-9_-]+)", version["urls"]["html"])
    assert slug, version
    return Site(server, event, boards, participants, slug.group(1))


@pytest.fixture(scope="module")
def site(module_server: LiveServer) -> Site:
    return _build_site(module_server)


# --- the pages -------------------------------------------------------------------------------


@dataclass
class Visit:
    """How to reach one page in a fresh context (cookies set, lang chosen)."""

    cookies: Callable[[Site], list[tuple[str, str]]] = lambda site: []
    go: Callable[[Page, Site], Any] = lambda page, site: None
    status: int = 200
    live: bool = False  # has a live socket: wait for body.is-live
    ready: str = "main"  # a selector that must be visible before the shot
    # A document in its own language whatever the reader's (a synthesis is in the language
    # it was frozen in): its <html lang> must say that one.
    document_lang: str | None = None


def _goto(path: Callable[[Site], str], status: int = 200) -> Callable[[Page, Site], Any]:
    def go(page: Page, site: Site) -> None:
        response = page.goto(site.url + path(site))
        assert response is not None, path(site)
        assert response.status == status, f"{page.url} answered {response.status}, not {status}"

    return go


def _participant(key: str) -> Callable[[Site], list[tuple[str, str]]]:
    return lambda site: [(f"ab_p_{site.code(key)}", site.participants[key])]


def _animator(key: str) -> Callable[[Page, Site], Any]:
    """The animator's link, with its key once (traded for a cookie, as on the created page)."""

    def go(page: Page, site: Site) -> None:
        board = site.boards[key]
        page.goto(board["urls"]["animator"])
        expect(page).to_have_url(re.compile(rf"/b/{board['join_code']}/animator$"))

    return go


def _join_form(page: Page, site: Site) -> None:
    page.goto(site.boards["collecte"]["urls"]["participant"])
    page.locator("#name").fill("Maëlle")
    page.locator("form.join-form button[type=submit]").click()
    expect(page.locator("#post-form")).to_be_visible()


def _create_board(page: Page, site: Site) -> None:
    page.goto(site.url + "/")
    form = page.locator("form[action='/boards']")
    form.locator("#title").fill("Politiques publiques et initiatives")
    form.locator("#question").fill(
        "Comment améliorer la coopération dans le cadre de la politique de la ville ?")
    form.locator(f"input[name=template][value='{TEMPLATE}']").check()
    form.locator("button[type=submit]").click()
    expect(page.locator("#animator-link")).to_be_visible()


def _create_event(page: Page, site: Site) -> None:
    page.goto(site.url + "/")
    form = page.locator("form[action='/events']")
    form.locator("#event-name").fill("Carrefour des métiers du développement territorial")
    form.locator("button[type=submit]").click()
    expect(page.locator("#dashboard-link")).to_be_visible()


def _dashboard(page: Page, site: Site) -> None:
    page.goto(site.event["urls"]["dashboard"])
    expect(page).to_have_url(re.compile(rf"/e/{site.event['id']}/dashboard$"))


PAGES: dict[str, Visit] = {
    "home": Visit(go=_goto(lambda s: "/")),
    "join-unknown-code": Visit(go=_goto(lambda s: "/join?code=BADCOD", status=404)),
    "participant-join-form": Visit(
        go=_goto(lambda s: f"/b/{s.code('collecte')}"), ready="form.join-form"),
    "participant-collecte": Visit(go=_join_form, live=True, ready="#post-form"),
    "participant-vote": Visit(cookies=_participant("vote"), live=True, ready="#ballot",
                              go=_goto(lambda s: f"/b/{s.code('vote')}")),
    "participant-restitution": Visit(cookies=_participant("restitution"), live=True,
                                     go=_goto(lambda s: f"/b/{s.code('restitution')}")),
    "projector-collecte": Visit(go=_goto(lambda s: f"/b/{s.code('collecte')}/projector"),
                                live=True, ready="#board article.card"),
    "projector-vote-results": Visit(go=_goto(lambda s: f"/b/{s.code('vote')}/projector"),
                                    live=True),
    "animator-collecte": Visit(go=_animator("collecte"), live=True, ready="#controls"),
    "animator-regroupement": Visit(go=_animator("regroupement"), live=True,
                                   ready="section.theme"),
    "animator-restitution": Visit(go=_animator("restitution"), live=True,
                                  ready="#synthesis-panel"),
    "animator-frozen": Visit(go=_animator("frozen"), live=True),
    "board-created": Visit(go=_create_board, ready="#animator-link"),
    "event-created": Visit(go=_create_event, ready="#dashboard-link"),
    "event-dashboard": Visit(go=_dashboard),
    "event-join": Visit(go=_goto(lambda s: f"/e/{s.event['id']}")),
    "event-synthesis": Visit(go=_goto(lambda s: f"/e/{s.event['id']}/synthesis"),
                             ready="article.atelier"),
    "archive": Visit(go=_goto(lambda s: "/archive")),
    "archive-search": Visit(go=_goto(lambda s: "/archive?q=coopération"),
                            ready="ul.search-results"),
    "synthesis-permalink": Visit(go=_goto(lambda s: f"/s/{s.slug}"), ready="h1",
                                 document_lang="fr"),
    "delete-confirmation": Visit(
        cookies=lambda s: [(f"ab_a_{s.code('collecte')}",
                            s.boards["collecte"]["animator_token"])],
        go=_goto(lambda s: f"/b/{s.code('collecte')}/animator/delete")),
    "not-found": Visit(go=_goto(lambda s: "/page-qui-n-existe-pas", status=404)),
    "accessibility-statement": Visit(go=_goto(lambda s: "/accessibilite"), ready="h1"),
}


# --- axe-core, results and reports -----------------------------------------------------------


@dataclass
class PageReport:
    """What axe found on one page, over every viewport and language it was opened in."""

    violations: dict[str, dict[str, Any]] = field(default_factory=dict)  # by rule id
    scans: dict[str, dict[str, int]] = field(default_factory=dict)  # "phone-fr" -> counts
    incomplete: dict[str, str] = field(default_factory=dict)  # rule id -> help
    problems: list[str] = field(default_factory=list)  # not axe: overflow, status, timeouts

    def add(self, where: str, result: dict[str, Any]) -> None:
        self.scans[where] = {"violations": len(result["violations"]),
                             "passes": len(result["passes"]),
                             "incomplete": len(result["incomplete"])}
        for rule in result["incomplete"]:  # "needs review": axe could not decide
            self.incomplete.setdefault(rule["id"], rule["help"])
        for violation in result["violations"]:
            rule = self.violations.setdefault(violation["id"], {
                "id": violation["id"], "impact": violation["impact"],
                "help": violation["help"], "helpUrl": violation["helpUrl"], "nodes": {}})
            for node in violation["nodes"]:
                target = " ".join(map(str, node["target"]))
                seen = rule["nodes"].setdefault(target, {
                    "target": target, "html": node["html"][:200],
                    "summary": node.get("failureSummary", ""), "in": []})
                seen["in"].append(where)

    def as_json(self) -> dict[str, Any]:
        first = self.scans.get("laptop-fr") or next(iter(self.scans.values()), {})
        return {
            "violations": [{**rule, "nodes": list(rule["nodes"].values())}
                           for rule in self.violations.values()],
            "passes": first.get("passes", 0), "incomplete": first.get("incomplete", 0),
            "incomplete_rules": self.incomplete, "scans": self.scans,
            "problems": self.problems,
        }

    def blocking(self) -> list[dict[str, Any]]:
        return [rule for rule in self.violations.values() if rule["impact"] in BLOCKING]


def describe(rules: list[dict[str, Any]], limit: int = 4) -> str:
    lines = []
    for rule in sorted(rules, key=lambda r: (IMPACTS.index(r["impact"] or "minor"), r["id"])):
        nodes = list(rule["nodes"].values())
        lines.append(f"  [{rule['impact']}] {rule['id']}: {rule['help']} "
                     f"({len(nodes)} element(s)) {rule['helpUrl']}")
        for node in nodes[:limit]:
            lines.append(f"      {node['target']}  in {','.join(node['in'])}")
        if len(nodes) > limit:
            lines.append(f"      … and {len(nodes) - limit} more")
    return "\n".join(lines)


def write_reports(reports: dict[str, PageReport], folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    data = {name: report.as_json() for name, report in reports.items()}
    (folder / "axe-results.json").write_text(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    rows = ["# axe-core " + AXE_TAGS_TEXT, "",
            "Rules violated per page (elements in brackets), over phone/laptop/projector (fr), "
            "laptop (en) and laptop (fr) with every <details> open. Passes and incomplete: "
            "counts of the laptop (fr) scan; in brackets, rules left for review in any scan.",
            "", "| page | critical | serious | moderate | minor | passes | incomplete | other |",
            "|---|---|---|---|---|---|---|---|"]
    for name, report in data.items():
        cells = []
        for impact in IMPACTS:
            rules = [v for v in report["violations"] if v["impact"] == impact]
            nodes = sum(len(v["nodes"]) for v in rules)
            cells.append(f"{len(rules)} ({nodes})" if rules else "0")
        other = "; ".join(report["problems"]).replace("|", "\\|") or ""
        review = ", ".join(report["incomplete_rules"])
        rows.append(f"| {name} | {' | '.join(cells)} | {report['passes']} | "
                    f"{report['incomplete']}{f' ({review})' if review else ''} | {other} |")
    rows += ["", "## Serious and critical violations", ""]
    for name, report in reports.items():
        if report.blocking():
            rows += [f"### {name}", "", "```", describe(report.blocking(), limit=20), "```", ""]
    (folder / "axe-results.md").write_text("\n".join(rows) + "\n", encoding="utf-8")


AXE_TAGS_TEXT = "(" + ", ".join(AXE_TAGS) + ")"


def run_axe(page: Page) -> dict[str, Any]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        """tags => axe.run(document, {runOnly: {type: 'tag', values: tags},
                                      resultTypes: ['violations']})
            .then(r => ({violations: r.violations, passes: r.passes,
                         incomplete: r.incomplete}))""",
        AXE_TAGS)
    return result


OPEN_DETAILS = """() => {
    const closed = [...document.querySelectorAll('details:not([open])')];
    closed.forEach(d => { d.open = true; });
    return closed.length;
}"""


def sideways(page: Page, viewport: dict[str, Any]) -> str | None:
    """The page is wider than the phone's screen. A mobile Chromium zooms out to show a page
    wider than its layout viewport, and window.innerWidth then grows with it: measure against
    the device width too, not innerWidth alone."""
    sizes: dict[str, int] = page.evaluate("""() => ({
        scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
        client: document.documentElement.clientWidth})""")
    limit = min(sizes["inner"], sizes["client"], viewport["viewport"]["width"])
    if sizes["scroll"] <= limit:
        return None
    # The outermost elements past the edge (their parent is not): what to fix.
    wide = page.evaluate("""limit => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > limit + 1)
        .filter(e => e.parentElement.getBoundingClientRect().right <= limit + 1)
        .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
            + [...e.classList].map(c => '.' + c).join('')
            + ' (right ' + Math.round(e.getBoundingClientRect().right) + ' px)')""", limit)
    return (f"scrolls sideways: scrollWidth {sizes['scroll']} px > {limit} px "
            f"(innerWidth {sizes['inner']}, clientWidth {sizes['client']}); "
            f"widest: {', '.join(wide)}")


@pytest.fixture(scope="module")
def reports() -> Iterator[dict[str, PageReport]]:
    found: dict[str, PageReport] = {}
    yield found
    write_reports(found, ROOT / "test-artifacts")


def open_context(browser: Browser, site: Site, viewport: dict[str, Any], lang: str,
                 cookies: list[tuple[str, str]]) -> BrowserContext:
    context = browser.new_context(bypass_csp=True, locale=LANGS[lang], **viewport)
    context.set_default_timeout(10_000)
    context.add_cookies([{"name": "lang", "value": lang, "url": site.url}] + [
        {"name": name, "value": value, "url": site.url, "httpOnly": True, "sameSite": "Lax"}
        for name, value in cookies])
    return context


# --- the test --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PAGES))
def test_page_is_accessible(name: str, site: Site, browser: Browser, artifacts: Path,
                            reports: dict[str, PageReport]) -> None:
    """No serious or critical axe violation in any viewport or language; no sideways scroll
    on a phone. Every combination is shot whole into test-artifacts."""
    visit = PAGES[name]
    report = reports.setdefault(name, PageReport())
    for lang in LANGS:
        for viewport, options in VIEWPORTS.items():
            where = f"{viewport}-{lang}"
            context = open_context(browser, site, options, lang, visit.cookies(site))
            try:
                page = context.new_page()
                try:
                    visit.go(page, site)
                    expect(page.locator(visit.ready).first).to_be_visible()
                    if visit.live:
                        expect_live(page, timeout=LIVE)
                except (AssertionError, PlaywrightError) as error:
                    report.problems.append(f"{where}: {str(error).splitlines()[0]}")
                    if page.url == "about:blank":
                        continue
                html_lang = page.evaluate("document.documentElement.lang")
                if html_lang != (expected := visit.document_lang or lang):
                    report.problems.append(
                        f"{where}: <html lang={html_lang!r}>, not {expected!r}")
                page.screenshot(path=artifacts / f"a11y-{name}-{where}.png", full_page=True,
                                animations="disabled", caret="initial")
                if viewport == "phone" and (overflow := sideways(page, options)):
                    report.problems.append(f"{where}: {overflow}")
                if lang == "fr" or viewport == "laptop":
                    report.add(where, run_axe(page))
                # What folded <details> hide (rename, edit, add a card…) is scanned too, once.
                if where == "laptop-fr" and page.evaluate(OPEN_DETAILS):
                    report.add(f"{where}+details", run_axe(page))
            finally:
                context.close()
    write_reports(reports, artifacts)
    failures = []
    if report.blocking():
        failures.append(f"axe: serious/critical violations on {name}:\n"
                        + describe(report.blocking()))
    if report.problems:
        failures.append(f"{name}:\n  " + "\n  ".join(report.problems))
    others = [rule for rule in report.violations.values() if rule["impact"] not in BLOCKING]
    if others:
        failures.append("(not failing: moderate/minor)\n" + describe(others, limit=2))
    if report.blocking() or report.problems:
        pytest.fail("\n".join(failures), pytrace=False)
