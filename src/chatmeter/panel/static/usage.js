// The usage page: filters that apply on change, and the stacked bar chart of tokens per day.
// The page reads fine without it: the same figures are in the table under the chart.
(() => {
  "use strict";
  const number = new Intl.NumberFormat("en-US");

  const filters = document.querySelector("[data-usage-filters]");
  if (filters) {
    filters.classList.add("is-live");
    filters.querySelectorAll("select").forEach((select) => {
      select.addEventListener("change", () => filters.requestSubmit());
    });
  }

  const source = document.getElementById("usage-data");
  const canvas = document.getElementById("usage-chart");
  if (!source || !canvas || typeof window.Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const style = getComputedStyle(document.documentElement);
  const colour = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
  const ink = colour("--muted", "#64748b");
  const grid = colour("--line", "#e2e8f0");
  const phone = window.matchMedia("(max-width: 860px)").matches;

  const dataset = (label, values, background) => ({
    label,
    data: values,
    backgroundColor: background,
    hoverBackgroundColor: background,
    stack: "tokens",
    borderRadius: 3,
    borderSkipped: false,
    maxBarThickness: 34,
    categoryPercentage: 0.72,
    barPercentage: 0.92,
  });

  const chart = new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        dataset("Training context", data.context, colour("--context", "#0f766e")),
        dataset("Response", data.response, colour("--response", "#5eead4")),
      ],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: { duration: 400 },
      interaction: { mode: "index", intersect: false },
      layout: { padding: { top: 4 } },
      scales: {
        x: {
          stacked: true,
          grid: { display: false },
          border: { color: grid },
          ticks: { color: ink, font: { size: 12 }, autoSkipPadding: 12, maxRotation: 0 },
        },
        y: {
          stacked: true,
          beginAtZero: true,
          grace: "5%",
          border: { display: false },
          grid: { color: grid },
          ticks: {
            color: ink,
            font: { size: 12 },
            maxTicksLimit: phone ? 5 : 6,
            precision: 0,
            callback: (value) => number.format(value),
          },
        },
      },
      plugins: {
        legend: { display: false }, // the page's own legend sits above the chart
        tooltip: {
          backgroundColor: "#0f172a",
          padding: 12,
          cornerRadius: 10,
          boxPadding: 4,
          titleFont: { weight: "600" },
          footerFont: { weight: "600" },
          callbacks: {
            title: (items) => data.titles[items[0].dataIndex],
            label: (item) => ` ${item.dataset.label}: ${number.format(item.parsed.y)}`,
            footer: (items) => {
              const index = items[0].dataIndex;
              const total = data.context[index] + data.response[index];
              const started = data.conversations[index];
              const conversations = `${number.format(started)} conversation${started === 1 ? "" : "s"}`;
              return `Total: ${number.format(total)} tokens\n${conversations} started`;
            },
          },
        },
      },
    },
  });
  canvas.dataset.ready = "true";
  window.usageChart = chart; // for the browser tests and anyone curious in the console
})();
