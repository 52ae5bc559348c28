// The fix grid (fix.html): Tabulator over the draft's rows, paged on the server. Every change is posted
// at once and the server answers with the rows it checked again by the import's rules; this script
// keeps no rule of its own. Values are shown as text, never as HTML.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const config = JSON.parse(document.getElementById("fix-config").textContent);
  const message = document.getElementById("fix-message");
  const loading = document.getElementById("fix-loading");
  let flaggedOnly = true;

  function say(text) {
    message.textContent = text || "";
    message.hidden = !text;
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ ...body, draft: config.draft, csrf_token: config.csrf }),
      credentials: "same-origin",
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.detail || `The server answered ${response.status}.`);
    return answer;
  }

  function record(row) {
    const data = { line: row.line, skipped_by: row.skipped_by, issues: row.issues, edits: row.edits };
    row.cells.forEach((value, index) => { data[`c${index}`] = value; });
    return data;
  }

  function text(tag, value, className) {
    const node = document.createElement(tag);
    node.textContent = value;
    if (className) node.className = className;
    return node;
  }

  function cellFormatter(index) {
    return (cell) => {
      const data = cell.getRow().getData();
      const element = cell.getElement();
      const issues = (data.issues || []).filter((issue) => issue.column === index);
      const edit = (data.edits || {})[String(index)];
      element.classList.toggle("flagged", issues.length > 0);
      element.classList.toggle("edited", Boolean(edit));
      element.title = edit ? `Changed by ${edit.by} (the file had: ${edit.before})` : "";
      const box = document.createElement("div");
      box.append(text("span", cell.getValue() ?? "", "value"));
      for (const issue of issues) box.append(text("div", issue.message.replace(/`/g, "\u201c"), "issue"));
      return box;
    };
  }

  function rowIssues(cell) {
    const box = document.createElement("div");
    const data = cell.getRow().getData();
    if (data.skipped_by) box.append(text("div", `Skipped by ${data.skipped_by}: left out of the fixed file.`, "skipped"));
    for (const issue of data.issues || []) {
      if (issue.column === null) box.append(text("div", issue.message.replace(/`/g, "\u201c"), "issue"));
    }
    cell.getElement().classList.toggle("flagged", (data.issues || []).some((issue) => issue.column === null));
    return box;
  }

  function skipButton(cell) {
    const data = cell.getRow().getData();
    const button = text("button", data.skipped_by ? "Keep" : "Skip", "secondary skip");
    button.type = "button";
    button.disabled = !config.open;
    button.title = data.skipped_by ? "Put this row back into the fixed file" : "Leave this row out of the fixed file";
    button.addEventListener("click", async (event) => {
      event.stopPropagation();
      await change(config.urls.skip, { line: data.line, skip: !data.skipped_by });
    });
    return button;
  }

  const columns = [
    { title: "line", field: "line", frozen: true, width: 64, hozAlign: "right", headerSort: false },
    { title: "", field: "skipped_by", formatter: skipButton, width: 70, headerSort: false, frozen: true },
    { title: "row", field: "issues", formatter: rowIssues, width: 180, headerSort: false, variableHeight: true },
    ...config.header.map((name, index) => ({
      title: config.fields[index] && config.fields[index] !== name ? `${name} (${config.fields[index]})` : name,
      field: `c${index}`,
      formatter: cellFormatter(index),
      editor: "input",
      editable: (cell) => config.open && !cell.getRow().getData().skipped_by,
      headerSort: false,
      minWidth: 110,
      maxWidth: 320,
      variableHeight: true,
    })),
  ];

  const table = new Tabulator("#fix-grid", {
    index: "line",
    columns,
    layout: "fitData",
    maxHeight: "70vh",
    placeholder: "No row has an issue now. Show every row to look at the rest, or import the fixed file.",
    pagination: true,
    paginationMode: "remote",
    paginationSize: 50,
    paginationSizeSelector: [25, 50, 100, 200],
    ajaxURL: config.urls.rows,
    ajaxParams: () => ({ flagged: flaggedOnly }),
    ajaxResponse: (url, params, response) => {
      showCounts(response.counts);
      loading.hidden = !response.loading;
      if (response.loading) setTimeout(() => table.setData(), 1000); // until the whole file is in
      return { last_page: response.last_page, data: response.rows.map(record) };
    },
    selectableRange: 1,
    selectableRangeColumns: false,
    selectableRangeRows: false,
    editTriggerEvent: "dblclick",
  });

  function showCounts(counts) {
    if (!counts) return;
    for (const [name, value] of Object.entries(counts)) {
      const shown = document.querySelector(`[data-count="${name}"]`);
      if (shown) shown.textContent = value.toLocaleString("en");
    }
  }

  function show(rows) {
    for (const row of rows) {
      const shown = table.getRow(row.line);
      if (shown) shown.update(record(row)).then(() => shown.reformat());
    }
  }

  async function change(url, body) {
    say("");
    try {
      const answer = await post(url, body);
      show(answer.rows);
      showCounts(answer.counts);
      return answer;
    } catch (error) {
      say(error.message);
      return null;
    }
  }

  table.on("cellEdited", async (cell) => {
    const index = Number(cell.getField().slice(1));
    const line = cell.getRow().getData().line;
    const answer = await change(config.urls.edit, { line, column: index, value: String(cell.getValue() ?? "") });
    if (answer === null) cell.restoreOldValue();
  });

  document.getElementById("all-rows").addEventListener("change", (event) => {
    flaggedOnly = !event.target.checked;
    table.setData();
  });

  const bulk = document.getElementById("bulk-form");
  const preview = document.getElementById("bulk-preview");
  const apply = document.getElementById("bulk-apply");
  function bulkBody() {
    const form = new FormData(bulk);
    return {
      column: Number(form.get("column")),
      whole: form.get("whole") === "true",
      find: String(form.get("find")),
      replace: String(form.get("replace")),
    };
  }
  bulk.addEventListener("input", () => { apply.hidden = true; preview.textContent = ""; });
  bulk.addEventListener("submit", async (event) => {
    event.preventDefault();
    say("");
    try {
      const answer = await post(config.urls.bulk, { ...bulkBody(), apply: false });
      const lines = answer.lines.join(", ") + (answer.count > answer.lines.length ? ", …" : "");
      preview.textContent = answer.count
        ? `${answer.count.toLocaleString("en")} cell${answer.count === 1 ? "" : "s"} will change (line${answer.count === 1 ? "" : "s"} ${lines}).`
        : "No cell of that column matches.";
      apply.dataset.count = `${answer.count.toLocaleString("en")} cell${answer.count === 1 ? "" : "s"}`;
      apply.textContent = `Apply to ${apply.dataset.count}`;
      apply.hidden = !answer.count;
    } catch (error) {
      say(error.message);
    }
  });
  apply.addEventListener("click", async () => {
    apply.hidden = true;
    const answer = await change(config.urls.bulk, { ...bulkBody(), apply: true });
    if (answer) {
      preview.textContent = `Changed ${apply.dataset.count} and checked again.`;
      table.setData();
    }
  });
});
