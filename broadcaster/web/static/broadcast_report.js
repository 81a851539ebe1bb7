/* broadcaster dashboard: a broadcast's report (/phat-thanh/{id}): "send again to those
 * who missed it" through the JSON API (POST /api/v1/broadcasts/{id}/resend), then the
 * page reloads to show the new copy under way. */
"use strict";

(function () {
  const button = document.getElementById("resend-broadcast");
  const section = document.getElementById("report");
  const state = document.getElementById("resend-state");
  if (!button || !section) return;
  const shared = window.broadcasterUi;  // app.js: the JSON API, the confirmation dialog
  const id = section.dataset.broadcastId;
  const missed = document.querySelectorAll("#missed-stations tbody tr").length;

  button.addEventListener("click", async () => {
    const ok = await shared.confirmDialog({
      title: "Gửi lại cho các trạm bị lỡ",
      text: "Gửi lại bản tin này cho " + missed + " trạm chưa phát được?",
      okLabel: "Gửi lại",
    });
    if (!ok) return;
    button.disabled = true;
    try {
      const data = await shared.api("POST", "/api/v1/broadcasts/" + id + "/resend");
      state.textContent = "Đã gửi lại lần " + data.resends.length + ". Đang theo dõi…";
      window.location.reload();
    } catch (err) {
      state.textContent = err.message;
      button.disabled = false;
    }
  });
})();
