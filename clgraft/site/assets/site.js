// clgraft site: draws the Vega-Lite figures, sorts and filters the leaderboard tables, copies BibTeX.
// Plain browser JavaScript with no imports; Vega, Vega-Lite and vega-embed are loaded before it from assets/.
"use strict";

const views = [];

function drawCharts() {
  if (typeof vegaEmbed === "undefined") return;
  for (const script of document.querySelectorAll("script[data-chart]")) {
    const target = script.previousElementSibling;
    const spec = JSON.parse(script.textContent);
    const options = {
      renderer: "svg",
      actions: { export: true, source: false, compiled: false, editor: false },
    };
    vegaEmbed(target, spec, options).then((result) => {
      target.removeAttribute("aria-hidden");
      views.push(result.view);
    });
  }
}

function cellKey(row, index, type) {
  const cell = row.children[index];
  if (type === "num") {
    const value = cell.dataset.value;
    return value === undefined || value === "" ? null : Number(value);
  }
  return cell.textContent.trim().toLowerCase();
}

function sortTable(table, header) {
  const headers = [...header.parentElement.children];
  const index = headers.indexOf(header);
  const type = header.dataset.type;
  const current = header.getAttribute("aria-sort");
  const first = type === "num" ? "descending" : "ascending";
  const direction = current === "none" ? first : current === "descending" ? "ascending" : "descending";
  const sign = direction === "ascending" ? 1 : -1;
  const body = table.tBodies[0];
  const rows = [...body.rows];
  rows.sort((a, b) => {
    const x = cellKey(a, index, type);
    const y = cellKey(b, index, type);
    if (x === null || y === null) return (x === null) - (y === null); // n/a last, either way
    return x < y ? -sign : x > y ? sign : 0;
  });
  for (const row of rows) body.appendChild(row);
  for (const other of headers) if (other.hasAttribute("aria-sort")) other.setAttribute("aria-sort", "none");
  header.setAttribute("aria-sort", direction);
  const caption = table.caption;
  if (caption) caption.textContent = caption.textContent.replace(/, sorted by .*$/, `, sorted by ${header.textContent.trim()} (${direction}).`);
}

function enableSorting() {
  for (const table of document.querySelectorAll("table.sortable")) {
    for (const header of table.tHead.rows[0].cells) {
      const button = header.querySelector("button");
      if (button) button.addEventListener("click", () => sortTable(table, header));
    }
  }
}

function applyFilters() {
  const chosen = {};
  for (const select of document.querySelectorAll("select[data-filter]")) chosen[select.dataset.filter] = select.value;
  let shown = 0, total = 0;
  const ids = [];
  for (const row of document.querySelectorAll("table.sortable tbody tr")) {
    const keep = Object.entries(chosen).every(([key, value]) => value === "" || row.dataset[key] === value);
    row.hidden = !keep;
    total += 1;
    if (keep) { shown += 1; ids.push(row.dataset.id); }
  }
  const count = document.getElementById("filter-count");
  if (count) count.textContent = shown === total ? `all ${total} rows` : `${shown} of ${total} rows`;
  const filtered = shown === total ? null : ids;
  for (const view of views) {
    try { view.signal("shown", filtered).runAsync(); } catch (e) { /* a figure without row filters */ }
  }
}

function enableFilters() {
  const selects = document.querySelectorAll("select[data-filter]");
  for (const select of selects) select.addEventListener("change", applyFilters);
  if (selects.length) applyFilters();
}

function copyText(button) {
  const source = document.getElementById(button.dataset.copy);
  const status = button.parentElement.querySelector(".copied");
  const done = (ok) => { if (status) status.textContent = ok ? "Copied." : "Select the text and copy it."; };
  const fallback = () => {
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    done(document.execCommand("copy"));
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(source.textContent).then(() => done(true), fallback);
  } else {
    fallback();
  }
}

function enableCopy() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => copyText(button));
  }
}

function foldOnPhones() {
  // the provenance is long: open on wide screens, one line (its summary) on a phone until asked for
  if (window.matchMedia("(max-width: 600px)").matches) {
    for (const details of document.querySelectorAll("details.provenance")) details.open = false;
  }
}

foldOnPhones();
drawCharts();
enableSorting();
enableFilters();
enableCopy();
