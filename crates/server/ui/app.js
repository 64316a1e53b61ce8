// The analyst UI: log in with a token, pick a domain, read the matrix of the
// active release, switch the heatmap, filter, drill down and export.

import { ApiError, allPages, clearToken, getJson, request, setToken, token, withQuery } from "./api.js";
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

async function openDrilldown(tactic, technique, opener) {
  state.drilldown = { tactic, technique, opener };
  const panel = $("drilldown");
  panel.hidden = false;
  $("drilldown-title").textContent = `${technique.id} ${technique.name} · ${tactic.name}`;
  const body = $("drilldown-body");
  const cell = state.cells.get(`${tactic.shortname}|${technique.id}`);
  const summary = el("p", "drill-summary");
  summary.textContent = cell
    ? `Count ${cell.count}, intensity ${formatIntensity(Number(cell.intensity))}, ${Math.round((Number(cell.low_confidence_share) || 0) * 100)}% low confidence${cell.anomaly ? ", anomaly flagged" : ""}.`
    : "No activity in this cell for the current filters.";
  const list = el("div", "drill-list");
  body.replaceChildren(summary, list);
  $("drilldown-title").focus();
  await loadDrilldownPage(list, null);
}

async function loadDrilldownPage(list, cursor) {
  const { tactic, technique } = state.drilldown;
  const query = { domain: state.domain, tactic: tactic.id, technique: technique.id, ...filters(), cursor };
  const loading = el("p", "drill-loading", "Loading…");
  list.append(loading);
  try {
    const body = await getJson("/api/v1/matrix/drilldown", query);
    loading.remove();
    const items = drilldownItems(body.data);
    if (items.length === 0 && !cursor) {
      list.append(el("p", "drill-empty", "No alerts or incidents behind this cell for the current filters."));
    }
    for (const item of items) {
      list.append(renderItem(item));
    }
    const next = body.meta ? body.meta.next_cursor : null;
    if (next) {
      const more = el("button", "drill-more", "Load more");
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

/** The drilldown's items, whether the API answers one list or separate
 *  `incidents` and `alerts` lists. */
function drilldownItems(data) {
  if (Array.isArray(data)) {
    return data;
  }
  if (data && typeof data === "object") {
    const incidents = (data.incidents ?? []).map((i) => ({ kind: "incident", ...i }));
    const alerts = (data.alerts ?? []).map((a) => ({ kind: "alert", ...a }));
    return [...incidents, ...alerts];
  }
  return [];
}

function text(value) {
  if (value === undefined || value === null || value === "") {
    return "—";
  }
  if (Array.isArray(value)) {
    return value.map(text).join("; ");
  }
  if (typeof value === "object") {
    return Object.entries(value)
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(", ");
  }
  return String(value);
}

function renderItem(item) {
  const kind = item.kind ?? item.type ?? "alert";
  const id = item.id ?? item.alert_id ?? item.incident_id ?? "";
  const article = el("article", `drill-item ${kind}`);
  article.dataset.kind = kind;
  article.dataset.id = id;
  const title = el("h3");
  title.append(el("span", "drill-kind", kind), document.createTextNode(" "), el("span", "drill-id", id));
  if (item.title ?? item.name) {
    title.append(el("span", "drill-title", ` ${item.title ?? item.name}`));
  }
  article.append(title);

  const facts = el("dl", "drill-facts");
  const add = (term, value, className) => {
    facts.append(el("dt", null, term), el("dd", className, text(value)));
  };
  const mapping = item.mapping ?? item;
  add("Severity", item.severity);
  add("Time", item.time ?? item.observed_at ?? item.created_at);
  add("Source", mapping.source, "drill-source");
  const confidence = mapping.confidence;
  const shownConfidence = Number.isFinite(Number(confidence)) ? Number(confidence).toFixed(2) : confidence;
  add("Confidence", confidence === undefined ? undefined : `${shownConfidence}${mapping.band ? ` (${mapping.band})` : ""}`, "drill-confidence");
  add("Evidence", mapping.evidence, "drill-evidence");
  if (mapping.explanation) {
    add("Why", mapping.explanation);
  }
  article.append(facts);

  const history = item.override_history ?? mapping.override_history ?? item.overrides ?? [];
  const historyTitle = el("h4", null, "Override history");
  article.append(historyTitle);
  if (history.length === 0) {
    article.append(el("p", "drill-history-empty", "No overrides."));
  } else {
    const list = el("ol", "drill-history");
    for (const entry of history) {
      const who = entry.actor ?? entry.by ?? "someone";
      const when = entry.at ?? entry.time ?? entry.created_at ?? "";
      const change = entry.from || entry.to ? ` ${text(entry.from)} → ${text(entry.to)}` : "";
      const reason = entry.reason_code ?? entry.reason ?? "";
      const notes = entry.notes ? `: ${entry.notes}` : "";
      list.append(el("li", null, `${when} ${who}${change} [${reason}]${notes}`.trim()));
    }
    article.append(list);
  }
  return article;
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
