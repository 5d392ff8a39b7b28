// Sortable tables: click a header to sort its column (numbers by value, n/a last), click again to reverse.
(function () {
  function key(row, index) {
    const cell = row.cells[index];
    if (!cell) return { missing: true };
    const sort = cell.getAttribute("data-sort");
    if (sort !== null && sort !== "") return { number: parseFloat(sort) };
    const text = cell.textContent.trim();
    if (text === "" || text === "n/a") return { missing: true };
    const number = parseFloat(text);
    return isNaN(number) || !/^[-+]?[0-9.]/.test(text) ? { text: text.toLowerCase() } : { number: number };
  }
  function compare(a, b) {
    if (a.missing || b.missing) return (a.missing ? 1 : 0) - (b.missing ? 1 : 0);
    if (a.number !== undefined && b.number !== undefined) return a.number - b.number;
    return String(a.text ?? a.number).localeCompare(String(b.text ?? b.number));
  }
  function sortBy(table, th, index) {
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(other => other.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows).map(row => ({ row: row, key: key(row, index) }));
    rows.sort((a, b) => {
      if (a.key.missing || b.key.missing) return compare(a.key, b.key);  // n/a stays last either way
      return ascending ? compare(a.key, b.key) : compare(b.key, a.key);
    });
    rows.forEach(item => body.appendChild(item.row));
  }
  document.querySelectorAll("table.sortable").forEach(table => {
    table.querySelectorAll("thead th").forEach((th, index) => {
      th.addEventListener("click", () => sortBy(table, th, index));
    });
  });
})();
