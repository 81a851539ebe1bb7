/* broadcaster dashboard: small vanilla JavaScript, no build step, no external code.
 * Talks to the JSON API with the session cookie (same origin; fetch sends Origin on
 * POST, which the API's CSRF check requires). */
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const TERMINAL = new Set(["SUCCEEDED", "FAILED", "REJECTED", "EXPIRED", "STOPPED"]);
  let LABELS = { target: {}, play: {}, command: {}, tier: {} };
  /* the service's time zone (BROADCASTER_TIMEZONE), which the pages' times are read in */
  const TZ = (document.body && document.body.dataset.tz) || "Asia/Ho_Chi_Minh";

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // a stored reason in Vietnamese (labels.reason_label: a known reason, a known beginning)
  function reasonLabel(reason) {
    const known = (LABELS.reason || {})[reason];
    if (known) return known;
    for (const [prefix, label] of Object.entries(LABELS.reason_prefix || {})) {
      if (reason.startsWith(prefix)) return label + reason.slice(prefix.length);
    }
    return reason;
  }

  function messageOf(data, status) {
    if (status === 401) return "Phiên đăng nhập đã hết hạn. Hãy tải lại trang và đăng nhập lại.";
    if (data && data.message_vi) {
      // a specific Vietnamese message says it all; only the generic "invalid data" of a
      // request the framework refused is followed by which fields (the API's own words)
      if (data.code === "validation_error" && Array.isArray(data.detail) && data.detail.length) {
        return data.message_vi + ": " + data.detail.map((d) => d.msg).join("; ");
      }
      return data.message_vi;
    }
    if (data && Array.isArray(data.detail)) return data.detail.map((d) => d.msg).join("; ");
    if (data && data.detail) return String(data.detail);
    if (status === 403) return "Tài khoản không có quyền thực hiện thao tác này.";
    return "Lỗi máy chủ (" + status + "). Vui lòng thử lại.";
  }

  async function api(method, url, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new Error("Không kết nối được tới máy chủ. Kiểm tra mạng rồi thử lại.");
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const error = new Error(messageOf(data, response.status));
      error.status = response.status;
      throw error;
    }
    return data;
  }

  /* A modal confirmation (the <dialog> in base.html); resolves true on "Đồng ý". */
  function confirmDialog(options) {
    const dialog = $("#confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") {
      return Promise.resolve(window.confirm(options.title + "\n\n" + options.text));
    }
    $("#confirm-title").textContent = options.title;
    const body = $("#confirm-body");
    body.replaceChildren();
    for (const line of [].concat(options.lines || [options.text])) {
      body.append(el("p", {}, line));
    }
    const ok = $("#confirm-ok");
    ok.textContent = options.okLabel || "Đồng ý";
    ok.className = options.danger ? "danger" : "";
    dialog.classList.toggle("emergency", Boolean(options.emergency));
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
      $("button[value=cancel]", dialog).focus();
    });
  }

  /* --- overview: refresh the figures every N seconds without reloading ------------- */

  function initOverview() {
    const root = $("#overview");
    if (!root) return;
    const every = Math.max(5, Number(root.dataset.refreshS) || 15) * 1000;
    const failure = $("#refresh-error");

    function renderUnits(units) {
      const rows = units.map((u) =>
        el("tr", {},
          el("th", { scope: "row" }, el("a", { href: "/tram?area=" + encodeURIComponent(u.code) }, u.name)),
          el("td", { className: "num" }, u.online + "/" + u.total),
          el("td", { className: "num hide-sm" + (u.offline ? " bad-text" : "") }, u.offline),
          el("td", { className: "bar-col" },
            el("div", { className: "bar", role: "img", "aria-label": u.percent + "% trạm trực tuyến" },
              el("span", { style: "width: " + u.percent + "%" })))));
      $("#units-body").replaceChildren(...(rows.length ? rows
        : [el("tr", {}, el("td", { colspan: 4, className: "muted" }, "Chưa có trạm nào trong địa bàn."))]));
    }

    function renderAttention(items) {
      const rows = items.map((a) =>
        el("li", { className: a.online ? "" : "offline" },
          el("a", { href: "/tram/" + encodeURIComponent(a.sid) }, el("strong", {}, a.name)), " ",
          el("span", { className: "muted small" }, a.sid + " · " + a.area),
          el("div", { className: "reasons" }, a.reasons.join(" · "))));
      $("#attention-list").replaceChildren(...(rows.length ? rows
        : [el("li", { className: "muted" }, "Tất cả các trạm đều hoạt động bình thường.")]));
    }

    function renderUpcoming(items) {
      const rows = items.map((item) =>
        el("tr", {},
          el("td", {}, item.now ? el("span", { className: "badge live" }, "Đang phát")
            : [item.start, " ", el("span", { className: "muted small" }, item.day)]),
          el("td", {}, item.title, " ", el("span", { className: "muted small" }, "· " + item.source)),
          el("td", { className: "hide-sm" }, el("span", { className: "tier tier-" + item.tier }, item.tier_label)),
          el("td", { className: "num" }, item.stations)));
      $("#upcoming-body").replaceChildren(...(rows.length ? rows
        : [el("tr", {}, el("td", { colspan: 4, className: "muted" }, "Chưa có mục nào sắp phát."))]));
    }

    function renderBroadcasts(items) {
      const rows = items.map((b) =>
        el("tr", {},
          el("td", {}, el("a", { href: "/phat-thanh/" + b.id }, b.title), " ",
            el("span", { className: "muted small" }, b.created_at + " · " + b.created_by)),
          el("td", { className: "hide-sm" }, el("span", { className: "tier tier-" + b.tier }, b.tier_label)),
          el("td", {}, b.status_label),
          el("td", { className: "num" }, b.succeeded + "/" + b.stations)));
      $("#broadcasts-body").replaceChildren(...(rows.length ? rows
        : [el("tr", {}, el("td", { colspan: 4, className: "muted" }, "Chưa có lượt phát nào."))]));
    }

    async function refresh() {
      if (document.hidden) return;
      try {
        const data = await api("GET", root.dataset.refreshUrl);
        $("#total-stations").textContent = data.totals.stations;
        $("#total-online").textContent = data.totals.online;
        $("#total-offline").textContent = data.totals.offline;
        $("#total-attention").textContent = data.totals.attention;
        renderUnits(data.units);
        renderAttention(data.attention);
        renderUpcoming(data.upcoming);
        renderBroadcasts(data.broadcasts);
        $("#updated").textContent = data.updated;
        failure.textContent = "";
      } catch (err) {
        if (err.status === 401) {
          window.location.assign("/dang-nhap");
          return;
        }
        failure.textContent = " · chưa cập nhật được, sẽ thử lại";
      }
    }

    setInterval(refresh, every);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) refresh();
    });
  }

  /* --- one station: commands with confirmation --------------------------------------- */

  function formatOffset(ms) {
    const sign = ms > 0 ? "+" : "";
    return sign + Math.round(ms) + " ms";
  }

  async function followCommand(cmdId, type, out) {
    const deadline = Date.now() + 30000;
    const name = LABELS.command[type] || type;
    // A ping's answer can be stored before the record of its send (the outbox records a
    // command as sent after the broker took it; a station answers within milliseconds):
    // the clock offset needs both, so a ping answered before its send is on record is
    // read again, briefly, before it is shown as done.
    let offsetReads = 10;
    while (Date.now() < deadline) {
      const data = await api("GET", "/api/v1/commands/" + encodeURIComponent(cmdId));
      const target = data.stations[0] || {};
      const hasOffset = target.clock_offset_ms !== null && target.clock_offset_ms !== undefined;
      let text = name + ": " + (LABELS.target[target.status] || target.status);
      if (hasOffset) text += " · lệch đồng hồ " + formatOffset(target.clock_offset_ms);
      if (target.reason) text += " (" + reasonLabel(target.reason) + ")";
      out.textContent = text;
      const sendUnrecorded = !data.command || !data.command.published_at;
      const offsetComing =
        type === "ping" && target.status === "SUCCEEDED" && !hasOffset && sendUnrecorded;
      if (offsetComing && offsetReads > 0) {
        offsetReads -= 1;
        await sleep(300);
        continue;
      }
      out.dataset.status = target.status || "";
      if (TERMINAL.has(target.status)) return;
      await sleep(1000);
    }
    out.textContent += " · trạm chưa trả lời, hãy xem lại sau.";
  }

  function initStation() {
    const box = $("#commands");
    if (!box) return;
    const sid = box.dataset.sid;
    const out = $("#command-result");
    box.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-command]");
      if (!button) return;
      const type = button.dataset.command;
      const body = { type };
      if (type === "volume") {
        const level = Number.parseInt($("#volume-level").value, 10);
        if (Number.isNaN(level) || level < 0 || level > 100) {
          out.textContent = "Âm lượng phải là số từ 0 đến 100.";
          return;
        }
        body.level = level;
      }
      const ok = await confirmDialog({
        title: button.textContent.trim(),
        text: button.dataset.confirm.replace("{level}", body.level),
        okLabel: button.textContent.trim(),
        danger: type === "reboot",
      });
      if (!ok) return;
      const buttons = $$("button[data-command]", box);
      buttons.forEach((b) => { b.disabled = true; });
      out.className = "command-result";
      out.textContent = "Đang gửi lệnh…";
      try {
        const command = await api("POST", "/api/v1/stations/" + encodeURIComponent(sid) + "/commands", body);
        await followCommand(command.cmd_id, type, out);
      } catch (err) {
        out.className = "command-result bad-text";
        out.textContent = err.message;
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    });
  }

  /* --- broadcast progress (server-sent events) -------------------------------------- */

  function trackBroadcast(id) {
    const panel = $("#progress");
    panel.hidden = false;
    panel.dataset.broadcastId = id;
    const state = $("#progress-state");
    const stop = $("#stop-broadcast");
    const link = $("#progress-link");
    if (link) {
      link.href = "/phat-thanh/" + id;
      link.hidden = document.body.dataset.page !== "broadcast";
    }
    let timer = null;
    let lastFetch = 0;
    let finished = false;

    function renderCounts(progress) {
      const by = progress.by_status || {};
      $("#count-total").textContent = progress.total;
      $("#count-RECEIVED").textContent = progress.received;
      $("#count-SUCCEEDED").textContent = by.SUCCEEDED || 0;
      $("#count-FAILED").textContent = (by.FAILED || 0) + (by.REJECTED || 0);
      $("#count-EXPIRED").textContent = by.EXPIRED || 0;
      $("#count-STOPPED").textContent = by.STOPPED || 0;
      // the bar counts only successes (a stopped or missed station is not progress)
      const bar = $("#progress-bar");
      const share = progress.total ? Math.round((100 * progress.succeeded) / progress.total) : 0;
      bar.setAttribute("aria-valuemax", progress.total);
      bar.setAttribute("aria-valuenow", progress.succeeded);
      bar.firstElementChild.style.width = share + "%";
    }

    function renderStations(rows) {
      const body = $("#progress-stations tbody");
      body.replaceChildren(...rows.map((row) =>
        el("tr", { "data-sid": row.sid, "data-status": row.status },
          el("td", {}, el("a", { href: "/tram/" + encodeURIComponent(row.sid) }, row.area || row.sid),
            row.area ? el("span", { className: "muted small" }, " " + row.sid) : ""),
          el("td", {}, el("span", { className: "target target-" + row.status },
            LABELS.target[row.status] || row.status)),
          el("td", {}, row.play_status ? (LABELS.play[row.play_status] || row.play_status) : "—"),
          el("td", { className: "muted small" }, note(row)))));
    }

    // a station not yet reached says so, with since when it is offline
    function note(row) {
      if (!row.offline_since) return row.reason ? reasonLabel(row.reason) : "";
      const since = new Date(row.offline_since).toLocaleString("vi-VN", {
        timeZone: TZ, hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit",
      });
      return "Chưa đến được (mất kết nối từ " + since + "); sẽ gửi lại khi trạm kết nối";
    }

    // what the page says once every station is settled: never "all done" unless all succeeded
    function settledText(data) {
      if (data.status === "stopped") return "Đã dừng phát theo lệnh của cán bộ.";
      const p = data.progress;
      if (p.total && p.succeeded === p.total) return "Đã phát thành công trên tất cả các trạm.";
      return "Đã kết thúc: " + p.succeeded + "/" + p.total + " trạm phát thành công.";
    }

    async function refreshDetail() {
      lastFetch = Date.now();
      const data = await api("GET", "/api/v1/broadcasts/" + id);
      renderCounts(data.progress);
      renderStations(data.stations || []);
      $("#progress-title").textContent = data.title;
      const done = data.progress.total && data.progress.finished === data.progress.total;
      if (data.status !== "active" || done) stop.hidden = true;
      if (data.status === "stopped" || done) state.textContent = settledText(data);
      return data;
    }

    function scheduleDetail() {
      if (timer) return;
      const wait = Math.max(0, 1000 - (Date.now() - lastFetch));
      timer = setTimeout(() => {
        timer = null;
        refreshDetail().catch(() => {});
      }, wait);
    }

    refreshDetail().catch((err) => { state.textContent = err.message; });

    if (typeof window.EventSource !== "function") {
      state.textContent = "Đang cập nhật định kỳ…";
      const poll = setInterval(async () => {
        try {
          const data = await refreshDetail();
          if (data.progress.total && data.progress.finished === data.progress.total) {
            clearInterval(poll);
          }
        } catch (err) {
          state.textContent = err.message;
        }
      }, 2000);
      return;
    }
    const events = new EventSource("/api/v1/broadcasts/" + id + "/events");
    events.addEventListener("open", () => {
      if (!finished) state.textContent = "Đang theo dõi trực tiếp…";
    });
    events.addEventListener("progress", (event) => {
      renderCounts(JSON.parse(event.data));
      scheduleDetail();
    });
    events.addEventListener("done", () => {
      finished = true;
      events.close();
      stop.hidden = true;
      refreshDetail().catch(() => {});
    });
    events.addEventListener("error", () => {
      if (finished) return;
      state.textContent = events.readyState === EventSource.CLOSED
        ? "Mất kết nối theo dõi. Tải lại trang để xem tiếp."
        : "Mất kết nối, đang kết nối lại…";
    });

    stop.onclick = async () => {
      const ok = await confirmDialog({
        title: "Dừng lượt phát",
        text: "Dừng phát bản tin này trên tất cả các trạm đang phát?",
        okLabel: "Dừng phát",
        danger: true,
      });
      if (!ok) return;
      stop.disabled = true;
      try {
        await api("POST", "/api/v1/broadcasts/" + id + "/stop");
        state.textContent = "Đã gửi lệnh dừng tới các trạm.";
        stop.hidden = true;
      } catch (err) {
        state.textContent = err.message;
      } finally {
        stop.disabled = false;
      }
    };
  }

  /* --- broadcast form ---------------------------------------------------------------- */

  function initBroadcastForm() {
    const form = $("#broadcast-form");
    if (!form) return;
    const error = $("#form-error");
    const send = $("#send-broadcast");
    const checked = (name) => form.querySelector("input[name='" + name + "']:checked");

    function sync() {
      const emergency = checked("tier").value === "emergency";
      form.classList.toggle("emergency", emergency);
      const textMode = $("#content-text-mode");
      textMode.disabled = !emergency;
      if (emergency && !form.dataset.touchedContent) textMode.checked = true;
      if (!emergency && textMode.checked) {
        form.querySelector("input[name='content-mode'][value='asset']").checked = true;
      }
      const mode = (checked("target-mode") || {}).value;
      $$(".target-panel", form).forEach((panel) => { panel.hidden = panel.dataset.mode !== mode; });
      const content = checked("content-mode").value;
      $$(".content-panel", form).forEach((panel) => { panel.hidden = panel.dataset.content !== content; });
      send.textContent = emergency ? "Phát khẩn cấp ngay" : "Phát ngay";
    }

    form.addEventListener("change", (event) => {
      if (event.target.name === "content-mode") form.dataset.touchedContent = "1";
      sync();
    });
    sync();

    function fail(message) {
      error.textContent = message;
      error.hidden = false;
      error.focus();
    }

    function collect() {
      const tier = checked("tier").value;
      const mode = (checked("target-mode") || {}).value;
      let targets;
      let where;
      let count;
      /* --- h11d: the confirmation counts the stations and names the places ----------- */
      const union = (items) => new Set(items.flatMap((i) => (i.dataset.sids || "").split(" ").filter(Boolean))).size;
      if (mode === "all") {
        targets = { groups: ["all"] };
        where = "Tất cả các trạm";
        count = Number(checked("target-mode").dataset.count) || 0;
      } else if (mode === "areas" || mode === "groups") {
        const boxes = $$("input[name='" + mode + "']:checked", form);
        if (!boxes.length) throw new Error(mode === "areas" ? "Hãy chọn ít nhất một phường, xã." : "Hãy chọn ít nhất một nhóm trạm.");
        targets = { [mode]: boxes.map((b) => b.value) };
        where = boxes.map((b) => b.dataset.name).join(", ");
        count = union(boxes);
      } else {
        const options = Array.from($("#target-stations").selectedOptions);
        if (!options.length) throw new Error("Hãy chọn ít nhất một trạm.");
        targets = { stations: options.map((o) => o.value) };
        where = options.slice(0, 8).map((o) => o.dataset.name || o.value).join(", ") + (options.length > 8 ? "…" : "");
        count = options.length;
      }
      let content;
      let what;
      if (checked("content-mode").value === "text") {
        const text = $("#text").value.trim();
        if (!text) throw new Error("Hãy nhập nội dung cần đọc.");
        content = { text, voice: $("#voice").value };
        what = "Văn bản: “" + (text.length > 120 ? text.slice(0, 120) + "…" : text) + "”";
      } else {
        const asset = $("#asset");
        if (!asset.value) throw new Error(asset.options.length > 1 ? "Hãy chọn bản tin cần phát." : "Chưa có bản tin nào được duyệt để phát.");
        content = { asset_id: Number(asset.value) };
        what = "Bản tin: " + asset.selectedOptions[0].textContent;
      }
      const payload = { targets, content, tier, repeat: Number($("#repeat").value) || 1 };
      const title = $("#title").value.trim();
      if (title) payload.title = title;
      return { payload, where, what, count };
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      let request;
      try {
        request = collect();
      } catch (err) {
        fail(err.message);
        return;
      }
      const emergency = request.payload.tier === "emergency";
      const tierLabel = LABELS.tier[request.payload.tier] || request.payload.tier;
      const lines = [
        "Mức: " + tierLabel,
        "Số trạm: " + request.count + " trạm",
        "Nơi phát: " + request.where,
        request.what,
        "Số lần phát: " + request.payload.repeat + " lần",
      ];
      if (emergency) {
        lines.unshift("Bản tin khẩn cấp sẽ chen ngang mọi nội dung đang phát và được phát ngay lập tức.");
      }
      const ok = await confirmDialog({
        title: emergency ? "Xác nhận PHÁT KHẨN CẤP" : "Xác nhận phát thanh",
        lines,
        okLabel: emergency ? "Phát khẩn cấp" : "Phát ngay",
        danger: emergency,
        emergency,
      });
      if (!ok) return;
      send.disabled = true;
      send.textContent = "Đang gửi…";
      try {
        const created = await api("POST", "/api/v1/broadcasts", request.payload);
        $("#progress-title").textContent = created.title;
        $("#count-total").textContent = created.station_count;
        $("#stop-broadcast").hidden = false;
        trackBroadcast(created.id);
        const heading = $("#h-progress");
        heading.setAttribute("tabindex", "-1");
        heading.scrollIntoView({ behavior: "smooth", block: "start" });
        heading.focus({ preventScroll: true });
      } catch (err) {
        fail(err.message);
      } finally {
        send.disabled = false;
        sync();
      }
    });
  }

  function initBroadcastView() {
    const panel = $("#progress");
    if (panel && panel.dataset.broadcastId && document.body.dataset.page === "broadcast-view") {
      trackBroadcast(panel.dataset.broadcastId);
    }
  }

  /* --- alarms (/canh-bao): acknowledge with a note, through the JSON API ------------- */

  function initAlarms() {
    const table = $("#alarms-table");
    if (!table) return;
    const out = $("#alarm-result");
    table.addEventListener("submit", async (event) => {
      const form = event.target.closest("form[data-alarm-ack]");
      if (!form) return;
      event.preventDefault();
      const button = $("button", form);
      button.disabled = true;
      out.className = "command-result";
      out.textContent = "Đang xác nhận…";
      try {
        const note = form.elements.note.value.trim();
        await api("POST", "/api/v1/alarms/" + form.dataset.alarmAck + "/acknowledge", { note: note || null });
        window.location.reload();
      } catch (err) {
        out.className = "command-result bad-text";
        out.textContent = err.message;
        button.disabled = false;
      }
    });
  }

  /* Station page: telemetry line charts (Chart.js, vendored), numbers in vi-VN. */
  function initCharts() {
    const data = $("#chart-data");
    if (!data || !window.Chart) return;
    const chart = JSON.parse(data.textContent);
    $$("canvas[data-chart]").forEach((canvas) => {
      new window.Chart(canvas, {
        type: "line",
        data: {
          labels: chart.at,
          datasets: [{ data: chart.series[canvas.dataset.chart], borderColor: "#b45309", pointRadius: chart.at.length > 30 ? 0 : 2, spanGaps: true, borderWidth: 2 }],
        },
        options: {
          locale: "vi-VN",
          animation: false,
          maintainAspectRatio: false,
          plugins: { legend: { display: false } },
          scales: { x: { ticks: { maxTicksLimit: 4, maxRotation: 0 } } },
        },
      });
    });
  }

  /* Alarms page: the stations on a Leaflet map, coloured by state, inside the outlines
     of their wards/communes; tiles only when a tile URL is configured (otherwise a plain
     background with the positions). */
  function initStationMap() {
    const data = $("#map-data");
    const box = $("#station-map");
    if (!data || !box || !window.L) return;
    const map = JSON.parse(data.textContent);
    const view = window.L.map(box, { attributionControl: Boolean(map.tiles) });
    if (map.tiles) window.L.tileLayer(map.tiles, { maxZoom: 18 }).addTo(view);
    (map.outlines || []).forEach((o) =>
      window.L.polygon(o.ring, {
        weight: 1.5,
        fillOpacity: 0.06,
        interactive: true,
        className: "area-outline area-" + o.code,
      })
        .bindTooltip(o.name + " (" + o.stations + " trạm)")
        .addTo(view));
    const markers = map.stations.map((s) =>
      window.L.circleMarker([s.lat, s.lon], {
        radius: 8,
        weight: 2,
        className: "station-marker state-" + s.state + " sid-" + s.sid,
      })
        .bindTooltip(s.name + " (" + s.sid + "): " + (map.labels[s.state] || s.state))
        .on("click", () => { window.location.href = "/tram/" + encodeURIComponent(s.sid); })
        .addTo(view));
    if (markers.length) {
      view.fitBounds(window.L.featureGroup(markers).getBounds().pad(0.2));
    } else {
      view.setView([10.24, 106.37], 12);
    }
  }

  /* --- shared with the other page scripts (library.js) ------------------------------ */
  window.broadcasterUi = { api, confirmDialog, messageOf, tz: TZ };

  document.addEventListener("DOMContentLoaded", () => {
    const labels = $("#labels");
    if (labels) LABELS = JSON.parse(labels.textContent);
    initOverview();
    initStation();
    initBroadcastForm();
    initBroadcastView();
    initAlarms();
    initCharts();
    initStationMap();
  });
})();
