// The analyst UI: log in with a token, pick a domain, read the matrix of the
// active release, switch the heatmap, filter, drill down (incidents, alerts,
// review and override) and export.

import { ApiError, allPages, clearToken, getJson, postJson, request, setToken, token, withQuery } from "./api.js";
import { buildModel, el, formatIntensity, indexCells, paint, renderMatrix } from "./matrix.js";

const DOMAIN_KEY = "nexus-attack.domain";

const MODE_TEXT = {
  count: "raw count",
  intensity: "weighted intensity",
};

const state = {
  domain: null,
  datasets: [],
  model: null,
  painted: [],
  cells: new Map(),
  formula: null,
  mode: "count",
  matrixAvailable: false,
  drilldown: null,
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- session

function showLogin(message) {
  $("session").hidden = true;
  $("workspace").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message ?? "";
  $("token").value = "";
  $("token").focus();
}

async function enterSession() {
  $("login").hidden = true;
  $("session").hidden = false;
  $("workspace").hidden = false;
  clearMessages();
  setStatus("Loading the active ATT&CK datasets…");
  try {
    await loadDomains();
    await loadDomain();
  } catch (error) {
    handleError(error);
  }
}

/** Every failure goes through here: a 401 ends the session and says why;
 *  anything else is shown with the API's code and message. */
function handleError(error) {
  if (error instanceof ApiError && error.status === 401) {
    clearToken();
    showLogin(`Logged out: ${error.describe()}`);
    return;
  }
  const text = error instanceof ApiError ? error.describe() : `Unexpected error: ${error.message}`;
  $("error").textContent = text;
  setStatus("");
}

function setStatus(text) {
  $("status").textContent = text;
}

function clearMessages() {
  $("error").textContent = "";
  setStatus("");
  delete $("status").dataset.export;
}

// ---------------------------------------------------------------- domains

async function loadDomains() {
  const datasets = await allPages("/api/v1/datasets", { state: "active" });
  state.datasets = datasets;
  const select = $("domain");
  select.replaceChildren();
  for (const dataset of datasets) {
    const option = el("option", null, `${dataset.domain} ${dataset.release}`);
    option.value = dataset.domain;
    select.append(option);
  }
  if (datasets.length === 0) {
    throw new ApiError(0, "no_active_dataset", "no ATT&CK dataset is active yet: a steward must load, approve and activate a release");
  }
  const remembered = sessionStorage.getItem(DOMAIN_KEY);
  const domains = datasets.map((d) => d.domain);
  state.domain = domains.includes(remembered)
    ? remembered
    : domains.includes("enterprise-attack")
      ? "enterprise-attack"
      : domains[0];
  select.value = state.domain;
}

async function loadDomain() {
  const domain = state.domain;
  const dataset = state.datasets.find((d) => d.domain === domain);
  $("release").textContent = dataset ? `release ${dataset.release}` : "";
  setStatus(`Loading the ${domain} matrix…`);
  closeDrilldown();

  const path = `/api/v1/taxonomy/${encodeURIComponent(domain)}`;
  const [tactics, techniques] = await Promise.all([
    getJson(`${path}/tactics`).then((body) => body.data),
    allPages(`${path}/techniques`, {}),
  ]);
  state.model = buildModel(tactics, techniques);
  fillPlatforms(state.model.platforms);
  state.painted = renderMatrix($("matrix"), state.model, openDrilldown);
  await loadMatrix();
}

function fillPlatforms(platforms) {
  const select = $("f-platform");
  const current = select.value;
  select.replaceChildren(Object.assign(el("option", null, "any"), { value: "" }));
  for (const platform of platforms) {
    select.append(Object.assign(el("option", null, platform), { value: platform }));
  }
  select.value = platforms.includes(current) ? current : "";
}

// ---------------------------------------------------------------- matrix

function filters() {
  const form = new FormData($("filters"));
  const params = {};
  for (const [key, value] of form.entries()) {
    params[key] = String(value).trim();
  }
  return params;
}

async function loadMatrix() {
  clearMessages();
  const query = { domain: state.domain, ...filters() };
  let note = "";
  try {
    const body = await getJson("/api/v1/matrix", query);
    const data = body.data ?? {};
    state.matrixAvailable = true;
    state.formula = typeof data.formula === "string" ? data.formula : null;
    state.cells = indexCells(data.cells ?? [], state.model.tactics);
    const exclusions = data.exclusions_applied ?? [];
    if (state.cells.size === 0) {
      note = "No mapped activity matches these filters.";
    }
    if (exclusions.length > 0) {
      note += ` Exclusions applied: ${exclusions.map(describeExclusion).join("; ")}.`;
    }
  } catch (error) {
    if (!(error instanceof ApiError && error.routeMissing)) {
      throw error;
    }
    // The matrix API is not on this server yet: show the release's matrix
    // with no activity rather than an error.
    state.matrixAvailable = false;
    state.formula = null;
    state.cells = new Map();
    note = "No mapping data yet: this server has no matrix endpoint, so every cell shows no activity.";
  }
  paint(state.painted, state.cells, state.mode);
  showMode();
  const active = [...state.cells.values()].filter((c) => Number(c.count) > 0).length;
  const summary = state.matrixAvailable ? `${active} active cells.` : "";
  setStatus(`${summary} ${note}`.trim());
  $("matrix").dataset.state = state.matrixAvailable ? "loaded" : "no-data";
}

function describeExclusion(exclusion) {
  if (typeof exclusion === "string") {
    return exclusion;
  }
  const parts = [exclusion.source ?? exclusion.connector ?? exclusion.name, exclusion.from && `from ${exclusion.from}`, exclusion.to && `to ${exclusion.to}`, exclusion.reason && `(${exclusion.reason})`];
  return parts.filter(Boolean).join(" ") || JSON.stringify(exclusion);
}

/** Shows the mode label and the formula that explains the colours. */
function showMode() {
  $("mode-label").textContent = MODE_TEXT[state.mode];
  $("matrix").dataset.mode = state.mode;
  let text;
  if (state.mode === "count") {
    text = "Colour: raw count of alerts mapped to the cell, relative to the largest cell in view.";
  } else if (state.formula) {
    text = `Colour: weighted intensity = ${state.formula} (relative to the largest cell in view).`;
  } else {
    text = "Colour: weighted intensity. The server returns its formula with mapping data; there is none yet.";
  }
  $("formula").textContent = text;
}

function setMode(mode) {
  state.mode = mode;
  paint(state.painted, state.cells, state.mode);
  showMode();
}

// ---------------------------------------------------------------- drilldown
//
// The panel lists, for one cell, the incidents holding its alerts and the
// alerts themselves with each mapping's source, confidence, band, evidence
// and override history, and offers the review and override actions. The
// API has no "who am I" route, so the UI cannot know the token's role:
// every action is offered, and a refusal shows the API's 403 message next
// to the action instead of hiding it up front.

const REASONS = [
  ["wrong_technique", "Wrong technique"],
  ["missing_technique", "Missing technique"],
  ["wrong_subtechnique", "Wrong sub-technique"],
  ["false_positive", "False positive"],
  ["taxonomy_update", "Taxonomy update"],
  ["other", "Other"],
];

async function openDrilldown(tactic, technique, opener) {
  state.drilldown = { tactic, technique, opener, incidents: new Map() };
  const panel = $("drilldown");
  panel.hidden = false;
  $("drilldown-title").textContent = `${technique.id} ${technique.name} · ${tactic.name}`;
  const body = $("drilldown-body");
  const cell = state.cells.get(`${tactic.shortname}|${technique.id}`);
  const summary = el("p", "drill-summary");
  summary.textContent = cell
    ? `Count ${cell.count}, intensity ${formatIntensity(Number(cell.intensity))}, ${Math.round((Number(cell.low_confidence_share) || 0) * 100)}% low confidence${cell.anomaly ? ", anomaly flagged" : ""}.`
    : "No activity in this cell for the current filters.";
  const incidents = el("section", "drill-incidents");
  incidents.setAttribute("aria-label", "Incidents holding these alerts");
  const list = el("div", "drill-list");
  body.replaceChildren(summary, incidents, list);
  $("drilldown-title").focus();
  await loadDrilldownPage(list, null);
}

async function loadDrilldownPage(list, cursor) {
  const drill = state.drilldown;
  const { tactic, technique } = drill;
  const query = { domain: state.domain, tactic: tactic.id, technique: technique.id, ...filters(), cursor };
  const loading = el("p", "drill-loading", "Loading…");
  list.append(loading);
  try {
    const body = await getJson("/api/v1/matrix/drilldown", query);
    loading.remove();
    if (state.drilldown !== drill) {
      return; // Another cell was opened meanwhile.
    }
    const data = body.data ?? {};
    const alerts = Array.isArray(data.alerts) ? data.alerts : [];
    const next = body.meta ? body.meta.next_cursor : null;
    addIncidents(data.incidents ?? [], !next);
    if (alerts.length === 0 && !cursor && drill.incidents.size === 0) {
      list.append(el("p", "drill-empty", "No alerts or incidents behind this cell for the current filters."));
    }
    for (const alert of alerts) {
      list.append(renderAlert(alert));
    }
    if (next) {
      const more = el("button", "drill-more", "Load more alerts");
      more.type = "button";
      more.addEventListener("click", () => {
        more.remove();
        loadDrilldownPage(list, next);
      });
      list.append(more);
    }
  } catch (error) {
    loading.remove();
    if (error instanceof ApiError && error.routeMissing) {
      list.append(el("p", "drill-empty", "No mapping data yet: this server has no drilldown endpoint, so there are no alerts or incidents to list."));
      return;
    }
    handleError(error);
  }
}

/** Adds a page's incidents to the panel's list: each page counts its own
 *  alerts, so the counts add up over the pages loaded; `complete` says
 *  whether the last page is in. */
function addIncidents(incidents, complete) {
  const drill = state.drilldown;
  for (const incident of incidents) {
    const known = drill.incidents.get(incident.id);
    const held = Number(incident.alerts_held) || 0;
    if (known) {
      known.alerts_held += held;
    } else {
      drill.incidents.set(incident.id, { ...incident, alerts_held: held });
    }
  }
  const section = $("drilldown-body").querySelector(".drill-incidents");
  if (!section) {
    return;
  }
  section.replaceChildren();
  if (drill.incidents.size === 0) {
    return;
  }
  section.append(el("h3", null, "Incidents"));
  const list = el("ul", "drill-incident-list");
  for (const incident of drill.incidents.values()) {
    const row = el("li", "drill-incident");
    row.dataset.id = incident.id;
    const alerts = incident.alerts_held === 1 ? "1 alert" : `${incident.alerts_held} alerts`;
    const scope = complete ? "of this cell" : "of the alerts loaded so far";
    row.append(
      el("span", "drill-incident-title", incident.title),
      el("span", "drill-incident-meta", ` · ${incident.status} · ${incident.severity} · holds ${alerts} ${scope}`),
      el("span", "drill-id", ` · ${incident.id}`),
    );
    list.append(row);
  }
  section.append(list);
}

function text(value) {
  if (value === undefined || value === null || value === "") {
    return "—";
  }
  if (Array.isArray(value)) {
    return value.length === 0 ? "—" : value.map(text).join("; ");
  }
  if (typeof value === "object") {
    return Object.entries(value)
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(", ");
  }
  return String(value);
}

/** One evidence item: `field = value (matched …)` when it has those parts. */
function evidenceText(item) {
  if (item && typeof item === "object" && "field" in item) {
    const matched = item.matched ? ` (matched ${item.matched})` : "";
    return `${item.field} = ${item.value ?? ""}${matched}`;
  }
  return text(item);
}

function confidenceText(confidence, band) {
  const value = Number(confidence);
  const shown = Number.isFinite(value) ? value.toFixed(2) : text(confidence);
  return band ? `${shown} (${band})` : shown;
}

function renderAlert(alert) {
  const id = alert.alert_id ?? alert.id ?? "";
  const article = el("article", "drill-item alert");
  article.dataset.kind = "alert";
  article.dataset.id = id;
  const title = el("h3");
  title.append(el("span", "drill-kind", "alert"), document.createTextNode(" "), el("span", "drill-id", id));
  if (alert.title) {
    title.append(el("span", "drill-title", ` ${alert.title}`));
  }
  article.append(title);

  const facts = el("dl", "drill-facts");
  const add = (term, value, className) => {
    facts.append(el("dt", null, term), el("dd", className, text(value)));
  };
  add("Severity", alert.severity);
  add("Time", alert.observed_at ?? alert.time);
  add("Connector", alert.connector);
  add("Host", alert.host);
  add("User", alert.user);
  add("Incidents", alert.incidents, "drill-alert-incidents");
  article.append(facts);

  const mappings = el("div", "drill-mappings");
  for (const mapping of alert.mappings ?? []) {
    mappings.append(renderMapping(mapping));
  }
  article.append(mappings);
  const history = (alert.mappings ?? [])[0]?.override_history ?? [];
  article.append(renderHistory(history));

  const current = el("p", "drill-current");
  current.setAttribute("aria-live", "polite");
  article.append(current);
  article.append(renderReviews(id, alert.open_reviews ?? []));
  article.append(renderOverride(id, alert.mappings ?? []));
  return article;
}

function renderMapping(mapping) {
  const box = el("div", "drill-mapping");
  box.dataset.technique = mapping.technique ?? "";
  const where = mapping.tactic ? ` in ${mapping.tactic}` : "";
  box.append(el("h4", null, `Mapping ${mapping.technique ?? ""}${where}`));
  const facts = el("dl", "drill-facts");
  const add = (term, value, className) => {
    facts.append(el("dt", null, term), el("dd", className, value));
  };
  add("Source", text(mapping.source), "drill-source");
  add("Confidence", confidenceText(mapping.confidence, mapping.band), "drill-confidence");
  const evidence = Array.isArray(mapping.evidence) ? mapping.evidence : [mapping.evidence].filter(Boolean);
  const evidenceList = el("ul", "drill-evidence");
  for (const item of evidence) {
    evidenceList.append(el("li", null, evidenceText(item)));
  }
  if (evidence.length === 0) {
    evidenceList.append(el("li", null, "none recorded"));
  }
  const evidenceCell = el("dd");
  evidenceCell.append(evidenceList);
  facts.append(el("dt", null, "Evidence"), evidenceCell);
  box.append(facts);
  return box;
}

function renderHistory(history) {
  const box = el("div", "drill-history-box");
  box.append(el("h4", null, "Override history"));
  if (history.length === 0) {
    box.append(el("p", "drill-history-empty", "No overrides."));
    return box;
  }
  const list = el("ol", "drill-history");
  for (const entry of history) {
    list.append(el("li", null, historyText(entry)));
  }
  box.append(list);
  return box;
}

/** One override row (the store's or the alert view's spelling). */
function historyText(entry) {
  const when = entry.created_at ?? entry.at ?? "";
  const who = entry.actor ?? "someone";
  const replaced = entry.replaces_technique ?? entry.replaces;
  const change = replaced ? `${replaced} → ${entry.technique}` : `${entry.action ?? ""} ${entry.technique ?? ""}`.trim();
  const status = entry.status ? ` ${entry.status}` : "";
  const notes = entry.notes ? `: ${entry.notes}` : "";
  return `${when} ${who} ${change} [${entry.reason ?? ""}]${status}${notes}`.trim();
}

/** Accept and reject buttons for each open review item of an alert. */
function renderReviews(alertId, reviews) {
  const box = el("div", "drill-reviews");
  if (reviews.length === 0) {
    return box;
  }
  box.append(el("h4", null, "Open review"));
  for (const review of reviews) {
    const row = el("div", "drill-review");
    row.dataset.id = review.id;
    const message = el("p", "drill-action-message");
    message.setAttribute("role", "status");
    row.append(el("span", null, `Queued for ${review.reason} `));
    for (const [decision, label] of [["accept", "Accept mapping"], ["reject", "Reject mapping"]]) {
      const button = el("button", `review-${decision}`, label);
      button.type = "button";
      button.addEventListener("click", async () => {
        message.textContent = "";
        try {
          await postJson(`/api/v1/review/${encodeURIComponent(review.id)}/decide`, { decision });
          for (const b of row.querySelectorAll("button")) {
            b.disabled = true;
          }
          message.textContent = decision === "accept" ? "Accepted." : "Rejected.";
          await refreshAlert(alertId);
        } catch (error) {
          actionError(error, message);
        }
      });
      row.append(button);
    }
    row.append(message);
    box.append(row);
  }
  return box;
}

let formSerial = 0;

/** The override form of an alert, folded behind a button. */
function renderOverride(alertId, mappings) {
  const box = el("div", "drill-override");
  const toggle = el("button", "override-toggle", "Override mapping…");
  toggle.type = "button";
  toggle.setAttribute("aria-expanded", "false");
  const form = el("form", "override-form");
  form.hidden = true;
  formSerial += 1;
  form.id = `override-${formSerial}`;
  toggle.setAttribute("aria-controls", form.id);
  const message = el("p", "drill-action-message");
  message.setAttribute("role", "status");

  const field = (label, control) => {
    control.id = `${form.id}-${control.name}`;
    const wrap = el("div", "field");
    const caption = el("label", null, label);
    caption.htmlFor = control.id;
    wrap.append(caption, control);
    form.append(wrap);
    return control;
  };
  const action = el("select");
  action.name = "action";
  field("Action", action);
  for (const [value, label] of [["replace", "Replace a technique"], ["add", "Add a technique"], ["remove", "Remove a technique"]]) {
    action.append(Object.assign(el("option", null, label), { value }));
  }
  const technique = el("input");
  technique.name = "technique";
  technique.type = "text";
  technique.spellcheck = false;
  technique.placeholder = "T1003";
  technique.required = true;
  field("Technique", technique);
  const replaces = el("select");
  replaces.name = "replaces";
  const techniques = [...new Set(mappings.map((m) => m.technique).filter(Boolean))];
  for (const t of techniques) {
    replaces.append(Object.assign(el("option", null, t), { value: t }));
  }
  const replacesField = field("Replaces", replaces);
  const reason = el("select");
  reason.name = "reason";
  reason.required = true;
  for (const [value, label] of REASONS) {
    reason.append(Object.assign(el("option", null, label), { value }));
  }
  field("Reason", reason);
  const notes = el("textarea");
  notes.name = "notes";
  notes.rows = 2;
  field("Notes", notes);
  const submit = el("button", "override-submit", "Submit override");
  submit.type = "submit";
  form.append(submit);

  // Replace names the technique replaced; add and remove do not.
  action.addEventListener("change", () => {
    replacesField.parentElement.hidden = action.value !== "replace";
    if (action.value === "remove" && !technique.value && techniques.length > 0) {
      technique.value = techniques[0];
    }
  });
  toggle.addEventListener("click", () => {
    const open = form.hidden;
    form.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) {
      action.focus();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    const body = {
      action: action.value,
      technique: technique.value.trim().toUpperCase(),
      reason: reason.value,
    };
    if (action.value === "replace" && replaces.value) {
      body.replaces = replaces.value;
    }
    if (notes.value.trim()) {
      body.notes = notes.value.trim();
    }
    submit.disabled = true;
    try {
      const answer = await postJson(`/api/v1/alerts/${encodeURIComponent(alertId)}/overrides`, body);
      const outcome = answer.data ?? {};
      message.textContent = outcome.applied
        ? "Override applied."
        : "Override proposed: it applies once a lead approves it.";
      form.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
      await refreshAlert(alertId);
      // The counts behind the cells changed: repaint, keep the panel open.
      loadMatrix().catch(handleError);
    } catch (error) {
      actionError(error, message);
    } finally {
      submit.disabled = false;
    }
  });
  box.append(toggle, form, message);
  return box;
}

/** A failed action: a 403 (role) or a refused input is said next to the
 *  action; a 401 still ends the session. */
function actionError(error, message) {
  if (error instanceof ApiError && error.status !== 401 && error.status !== 0) {
    const prefix = error.status === 403 ? "Not allowed for this token's role: " : "";
    message.textContent = `${prefix}${error.describe()}`;
    message.classList.add("error");
    return;
  }
  handleError(error);
}

/** Re-reads one alert's mapping (GET /api/v1/alerts/{id}) and shows its
 *  current canonical mapping and override history in its drilldown item. */
async function refreshAlert(alertId) {
  const article = [...$("drilldown-body").querySelectorAll("article.drill-item")].find((a) => a.dataset.id === alertId);
  if (!article) {
    return;
  }
  const body = await getJson(`/api/v1/alerts/${encodeURIComponent(alertId)}`);
  const view = body.data ?? {};
  const entries = view.canonical?.entries ?? [];
  const current = article.querySelector(".drill-current");
  current.textContent = entries.length === 0
    ? "Current mapping: none."
    : `Current mapping: ${entries.map((e) => `${e.technique}${e.tactic ? ` in ${e.tactic}` : ""} (${e.source}, ${confidenceText(e.confidence, e.band)})`).join("; ")}.`;
  current.dataset.techniques = entries.map((e) => e.technique).join(",");
  const history = article.querySelector(".drill-history-box");
  history.replaceWith(renderHistory(view.overrides ?? []));
}

function closeDrilldown() {
  const panel = $("drilldown");
  if (panel.hidden) {
    return;
  }
  panel.hidden = true;
  const opener = state.drilldown ? state.drilldown.opener : null;
  state.drilldown = null;
  if (opener && document.body.contains(opener)) {
    opener.focus();
  }
}

// ---------------------------------------------------------------- exports

const EXPORTS = {
  navigator: { label: "Navigator layer", extension: "json" },
  csv: { label: "CSV", extension: "csv" },
};

async function exportView(format) {
  clearMessages();
  const { label, extension } = EXPORTS[format];
  const query = { format, domain: state.domain, ...filters() };
  try {
    let response = await request(withQuery("/api/v1/matrix/export", query));
    let blob;
    const type = response.headers.get("content-type") ?? "";
    if (type.includes("application/json")) {
      const body = await response.json();
      const data = body && typeof body === "object" && "data" in body ? body.data : body;
      if (data && typeof data.url === "string") {
        // A short-lived signed URL: its signature authorizes the download,
        // so the bearer token is not sent with it.
        response = await fetch(data.url, { credentials: "omit", cache: "no-store" });
        if (!response.ok) {
          throw new ApiError(response.status, `http_${response.status}`, `the signed download answered ${response.status}`);
        }
        blob = await response.blob();
      } else {
        blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
      }
    } else {
      blob = await response.blob();
    }
    const name = fileName(response, `nexus-attack-${state.domain}.${extension}`);
    download(blob, name);
    setStatus(`Exported ${label}: ${name} (${blob.size} bytes).`);
    $("status").dataset.export = name;
  } catch (error) {
    if (error instanceof ApiError && error.routeMissing) {
      setStatus(`${label} export is not available on this server yet (no export endpoint).`);
      $("status").dataset.export = "unavailable";
      return;
    }
    handleError(error);
  }
}

function fileName(response, fallback) {
  const disposition = response.headers.get("content-disposition") ?? "";
  const match = /filename="?([^";]+)"?/i.exec(disposition);
  // Only a plain file name: never let a header pick a path.
  return match ? match[1].replace(/[\\/]/g, "_") : fallback;
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) {
      $("login-error").textContent = "Enter a token.";
      return;
    }
    setToken(value);
    $("token").value = "";
    enterSession();
  });
  $("logout").addEventListener("click", () => {
    clearToken();
    showLogin("Logged out.");
  });
  $("domain").addEventListener("change", () => {
    state.domain = $("domain").value;
    sessionStorage.setItem(DOMAIN_KEY, state.domain);
    loadDomain().catch(handleError);
  });
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    closeDrilldown();
    loadMatrix().catch(handleError);
  });
  $("filters").addEventListener("reset", () => {
    // The form clears its fields after this event: reload once it has.
    setTimeout(() => loadMatrix().catch(handleError), 0);
  });
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => setMode(radio.value));
  }
  $("export-navigator").addEventListener("click", () => exportView("navigator"));
  $("export-csv").addEventListener("click", () => exportView("csv"));
  $("drilldown-close").addEventListener("click", closeDrilldown);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      closeDrilldown();
    }
  });
}

wire();
if (token()) {
  enterSession();
} else {
  showLogin();
}
