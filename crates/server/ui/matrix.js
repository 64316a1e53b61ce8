// The ATT&CK matrix: tactic columns in matrix order, technique cells with
// expandable sub-techniques, and the heatmap painted from the matrix API's
// cells (count, intensity, low-confidence share, anomaly flag).

/** Creates an element with a class and optional text. */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined && text !== null) {
    node.textContent = String(text);
  }
  return node;
}

/** A visually hidden label, read by screen readers only. */
function sr(text) {
  return el("span", "sr-only", text);
}

/**
 * Groups techniques under their tactics. A technique appears in every tactic
 * its kill-chain phases name; a sub-technique appears under its parent in
 * each of those tactics it also names (ATT&CK gives sub-techniques their
 * parent's tactics, but nothing forces a release to).
 */
export function buildModel(tactics, techniques) {
  const parents = new Map();
  const subsByParent = new Map();
  for (const technique of techniques) {
    if (technique.is_subtechnique && technique.parent) {
      const list = subsByParent.get(technique.parent) ?? [];
      list.push(technique);
      subsByParent.set(technique.parent, list);
    } else if (!technique.is_subtechnique) {
      parents.set(technique.id, technique);
    }
  }
  const byName = (a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id);
  const columns = tactics.map((tactic) => {
    const inTactic = [...parents.values()]
      .filter((t) => (t.tactics ?? []).includes(tactic.shortname))
      .sort(byName)
      .map((technique) => ({
        technique,
        subs: (subsByParent.get(technique.id) ?? [])
          .filter((s) => (s.tactics ?? []).includes(tactic.shortname))
          .sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true })),
      }));
    return { tactic, techniques: inTactic };
  });
  const platforms = [...new Set(techniques.flatMap((t) => t.platforms ?? []))].sort();
  return { columns, platforms, tactics };
}

/** Index of the matrix API's cells by "tactic shortname|technique ID". The
 *  API may name a tactic by ID (TA0002) or shortname (execution). */
export function indexCells(cells, tactics) {
  const shortnames = new Map();
  for (const tactic of tactics) {
    shortnames.set(tactic.id, tactic.shortname);
    shortnames.set(tactic.shortname, tactic.shortname);
  }
  const index = new Map();
  for (const cell of cells ?? []) {
    const tactic = shortnames.get(cell.tactic) ?? cell.tactic;
    index.set(`${tactic}|${cell.technique}`, cell);
  }
  return index;
}

const EMPTY = { count: 0, intensity: 0, low_confidence: 0, low_confidence_share: 0, anomaly: false };

/** Formats an intensity: at most two decimals, no trailing zeros. */
export function formatIntensity(value) {
  return Number.isFinite(value) ? String(Math.round(value * 100) / 100) : "0";
}

/** Renders the matrix into `container`; `onOpen(tactic, technique, opener)`
 *  is called when a cell is activated. Answers the list of painted cells. */
export function renderMatrix(container, model, onOpen) {
  container.replaceChildren();
  const painted = [];
  for (const { tactic, techniques } of model.columns) {
    const column = el("section", "tactic");
    column.dataset.tacticId = tactic.id;
    column.dataset.tactic = tactic.shortname;
    const headingId = `tactic-${tactic.shortname}`;
    column.setAttribute("aria-labelledby", headingId);
    const heading = el("h2", "tactic-head");
    heading.id = headingId;
    heading.append(el("span", "tactic-name", tactic.name), el("span", "tactic-meta", `${tactic.id} · ${techniques.length} techniques`));
    column.append(heading);

    const list = el("ul", "techniques");
    for (const { technique, subs } of techniques) {
      const item = el("li", "technique");
      const row = el("div", "cell-row");
      const cell = techniqueCell(tactic, technique, false, onOpen);
      painted.push(cell);
      row.append(cell.node);
      item.append(row);

      if (subs.length > 0) {
        const subList = el("ul", "subs");
        subList.id = `subs-${tactic.shortname}-${technique.id}`;
        subList.hidden = true;
        for (const sub of subs) {
          const subItem = el("li", "subtechnique");
          const subCell = techniqueCell(tactic, sub, true, onOpen);
          painted.push(subCell);
          subItem.append(subCell.node);
          subList.append(subItem);
        }
        // A real button: Enter and Space toggle it, it is in the tab order,
        // and aria-expanded tells assistive technology the state.
        const toggle = el("button", "sub-toggle");
        toggle.type = "button";
        toggle.setAttribute("aria-expanded", "false");
        toggle.setAttribute("aria-controls", subList.id);
        toggle.dataset.technique = technique.id;
        toggle.append(el("span", "chevron", "▸"), el("span", "sub-count", subs.length), sr(` sub-techniques of ${technique.id}`));
        toggle.title = `Show or hide the ${subs.length} sub-techniques of ${technique.id}`;
        toggle.addEventListener("click", () => {
          const open = toggle.getAttribute("aria-expanded") !== "true";
          toggle.setAttribute("aria-expanded", String(open));
          subList.hidden = !open;
        });
        row.append(toggle);
        item.append(subList);
      }
      list.append(item);
    }
    column.append(list);
    container.append(column);
  }
  return painted;
}

/** One technique or sub-technique cell: a button that opens the drilldown. */
function techniqueCell(tactic, technique, isSub, onOpen) {
  const button = el("button", isSub ? "cell sub" : "cell");
  button.type = "button";
  button.dataset.technique = technique.id;
  button.dataset.tactic = tactic.shortname;
  const name = el("span", "cell-name", technique.name);
  const id = el("span", "cell-id", technique.id);
  const count = el("span", "figure count");
  const intensity = el("span", "figure intensity");
  const anomaly = el("span", "anomaly", "!");
  anomaly.title = "Anomaly: the count spikes against this cell's own recent baseline";
  anomaly.hidden = true;
  const confidence = el("span", "confidence");
  const lowBar = el("span", "confidence-low");
  confidence.append(lowBar);
  const figures = el("span", "figures");
  figures.append(count, intensity, anomaly);
  button.append(name, id, figures, confidence);
  button.addEventListener("click", () => onOpen(tactic, technique, button));

  return {
    node: button,
    key: `${tactic.shortname}|${technique.id}`,
    paint(cell, mode, max) {
      const data = cell ?? EMPTY;
      const value = mode === "intensity" ? data.intensity : data.count;
      const heat = max > 0 && value > 0 ? Math.max(0.08, value / max) : 0;
      button.style.setProperty("--heat", heat.toFixed(3));
      button.classList.toggle("active", data.count > 0);
      button.classList.toggle("anomalous", Boolean(data.anomaly));
      const share = Number(data.low_confidence_share) || 0;
      lowBar.style.setProperty("--low", share.toFixed(3));
      // The button's aria-label reads the figures out with their names.
      count.textContent = String(data.count ?? 0);
      intensity.textContent = formatIntensity(Number(data.intensity));
      count.classList.toggle("shown", mode === "count");
      intensity.classList.toggle("shown", mode === "intensity");
      anomaly.hidden = !data.anomaly;
      confidence.hidden = !(data.count > 0);
      const lowPercent = Math.round(share * 100);
      confidence.title = `${lowPercent}% of mappings in this cell have low confidence`;
      button.dataset.count = String(data.count ?? 0);
      button.dataset.intensity = formatIntensity(Number(data.intensity));
      button.dataset.lowConfidenceShare = share.toFixed(3);
      button.dataset.anomaly = String(Boolean(data.anomaly));
      button.setAttribute(
        "aria-label",
        `${technique.id} ${technique.name}: count ${data.count ?? 0}, intensity ${formatIntensity(Number(data.intensity))}` +
          (data.count > 0 ? `, ${lowPercent}% low confidence` : "") +
          (data.anomaly ? ", anomaly" : ""),
      );
    },
  };
}

/** Paints every cell for a heatmap mode (`count` or `intensity`). */
export function paint(painted, index, mode) {
  let max = 0;
  for (const cell of index.values()) {
    const value = mode === "intensity" ? Number(cell.intensity) : Number(cell.count);
    if (Number.isFinite(value) && value > max) {
      max = value;
    }
  }
  for (const cell of painted) {
    cell.paint(index.get(cell.key), mode, max);
  }
}
