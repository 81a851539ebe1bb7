// The report page (/bao-cao): draws the minutes chart from #report-data with the
// vendored Chart.js (static/vendor/chartjs), numbers with the Vietnamese decimal comma.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", () => {
    const data = document.getElementById("report-data");
    const canvas = document.getElementById("report-chart");
    if (!data || !canvas || typeof window.Chart === "undefined") return;
    const chart = JSON.parse(data.textContent);
    const number = new Intl.NumberFormat("vi-VN", { maximumFractionDigits: 1 });
    canvas.parentElement.style.height = Math.max(220, chart.labels.length * 34 + 90) + "px";
    new window.Chart(canvas, {
      type: "bar",
      data: { labels: chart.labels, datasets: chart.datasets },
      options: {
        indexAxis: "y",
        maintainAspectRatio: false,
        animation: false,
        locale: "vi-VN",
        scales: {
          x: { stacked: true, title: { display: true, text: chart.axis } },
          y: { stacked: true },
        },
        plugins: {
          legend: { position: "bottom" },
          tooltip: {
            callbacks: {
              label: (ctx) => `${ctx.dataset.label}: ${number.format(ctx.parsed.x)} phút`,
            },
          },
        },
      },
    });
    canvas.dataset.ready = "1";
  });
})();
