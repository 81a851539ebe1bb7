/* broadcaster dashboard: the programme editor and the rule editor (/lich/...).
 * Small vanilla JavaScript, no build step.  Saving and the live preview go through the
 * JSON API with the session cookie (window.broadcasterUi.api, app.js). */
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const api = () => window.broadcasterUi.api;

  function dataOf(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  /* "1 giờ 05 phút", "3 phút 20 giây", "45 giây" (as the pages' `duration` filter). */
  function duration(ms) {
    const total = Math.round((ms || 0) / 1000);
    if (total < 60) return total + " giây";
    const m = Math.floor(total / 60), s = total % 60;
    if (m < 60) return s ? m + " phút " + String(s).padStart(2, "0") + " giây" : m + " phút";
    return Math.floor(m / 60) + " giờ " + String(m % 60).padStart(2, "0") + " phút";
  }

  let TZ = "Asia/Ho_Chi_Minh";  /* the service zone, from the page data */
  function when(iso, withDate) {
    const d = new Date(iso);
    const time = d.toLocaleTimeString("vi-VN", { timeZone: TZ, hour: "2-digit", minute: "2-digit", hour12: false });
    if (!withDate) return time;
    const day = d.toLocaleDateString("vi-VN", { timeZone: TZ, weekday: "short", day: "2-digit", month: "2-digit" });
    return time + " " + day;
  }

  function show(result, ok, text) {
    result.className = "lib-result " + (ok ? "ok-text" : "bad-text");
    result.textContent = text;
  }

  function toggleFields(attr, value) {
    $$("[" + attr + "]").forEach((node) => {
      node.hidden = !node.getAttribute(attr).split(" ").includes(value);
    });
  }

  /* --- programmes -------------------------------------------------------------- */

  function initProgramme() {
    const data = dataOf("programme-data");
    const form = $("#programme-form");
    if (!data || !form) return;
    const assets = new Map(data.assets.map((a) => [a.id, a]));
    const sources = new Map(data.sources.map((s) => [s.id, s]));
    const list = $("#p-items");
    const writable = Boolean($("#p-save"));
    /* the items as the API takes them, plus what the page shows */
    const RATES = { "-3": "−3 (chậm)", "-2": "−2", "-1": "−1", "0": "Bình thường", "1": "+1", "2": "+2", "3": "+3 (nhanh)" };
    let items = data.items.map((i) => ({
      kind: i.kind, asset_id: i.asset_id, source_id: i.source_id, duration_ms: i.duration_ms,
      text: i.text, voice: i.voice || "south", rate: i.rate || 0, title: i.title,
      label: i.asset_title || i.source_name || i.title || i.text || "",
    }));

    function describe(item) {
      const kind = data.kinds[item.kind];
      if (item.kind === "gap") return kind + " · " + duration(item.duration_ms);
      if (item.kind === "text") return kind + ": “" + item.text + "”" + (item.duration_ms ? " · " + duration(item.duration_ms) : " · đọc khi lưu");
      return kind + ": " + item.label + " · " + duration(item.duration_ms);
    }

    function labelled(field, text) {
      const label = document.createElement("label");
      label.className = "sch-inline";
      label.append(text, " ", field);
      return label;
    }

    function choice(options, value, onChange) {
      const select = document.createElement("select");
      Object.entries(options).forEach(([v, text]) => {
        const o = document.createElement("option");
        o.value = v; o.textContent = text; select.append(o);
      });
      select.value = String(value);
      select.addEventListener("change", () => onChange(select.value));
      return select;
    }

    function render() {
      list.replaceChildren();
      items.forEach((item, index) => {
        const li = document.createElement("li");
        li.className = "sch-item sch-item-" + item.kind;
        li.dataset.index = String(index);
        if (writable) {
          const handle = document.createElement("span");
          handle.className = "sch-handle";
          handle.textContent = "⠿";
          handle.title = "Kéo để đổi thứ tự";
          handle.setAttribute("aria-hidden", "true");
          li.append(handle);
        }
        const text = document.createElement("span");
        text.className = "sch-desc";
        text.textContent = describe(item);
        li.append(text);
        if (writable) {
          const fields = document.createElement("span");
          fields.className = "sch-fields";
          if (item.kind !== "gap") {
          const title = document.createElement("input");
          title.type = "text"; title.maxLength = 300; title.value = item.title || "";
          title.className = "sch-item-title";
          title.placeholder = "(không bắt buộc)";
          title.addEventListener("input", () => { item.title = title.value; });
          fields.append(labelled(title, "Tên mục " + (index + 1)));
          }
          if (item.kind === "text") {
            fields.append(labelled(choice(data.voices, item.voice || "south", (v) => { item.voice = v; item.duration_ms = null; render(); }), "Giọng"));
            fields.append(labelled(choice(RATES, item.rate || 0, (v) => { item.rate = Number(v); item.duration_ms = null; render(); }), "Tốc độ"));
          }
          li.append(fields);
          const tools = document.createElement("span");
          tools.className = "sch-tools";
          [["↑", "Lên", -1], ["↓", "Xuống", 1]].forEach(([sign, word, step]) => {
            const b = document.createElement("button");
            b.type = "button"; b.className = "secondary small"; b.textContent = sign;
            b.setAttribute("aria-label", word + ": mục " + (index + 1));
            b.disabled = index + step < 0 || index + step >= items.length;
            b.addEventListener("click", () => {
              move(index, index + step);
              const again = $$("button[aria-label='" + word + ": mục " + (index + step + 1) + "']", list)[0];
              if (again && !again.disabled) again.focus();
            });
            tools.append(b);
          });
          const del = document.createElement("button");
          del.type = "button"; del.className = "danger small"; del.textContent = "Bỏ";
          del.setAttribute("aria-label", "Bỏ mục " + (index + 1));
          del.addEventListener("click", () => { items.splice(index, 1); render(); });
          tools.append(del);
          li.append(tools);
        }
        list.append(li);
      });
      const known = items.every((i) => i.duration_ms);
      const total = items.reduce((sum, i) => sum + (i.duration_ms || 0), 0);
      $("#p-total").textContent = items.length ? duration(total) + (known ? "" : " + phần văn bản đọc (tính khi lưu)") : "—";
    }

    function move(from, to) {
      if (from === to || to < 0 || to >= items.length) return;
      const [moved] = items.splice(from, 1);
      items.splice(to, 0, moved);
      render();
    }

    /* drag and drop (SortableJS, vendored); the ↑/↓ buttons stay for the keyboard */
    if (writable && window.Sortable) {
      window.Sortable.create(list, {
        handle: ".sch-handle",
        animation: 150,
        forceFallback: true,  /* pointer events: the same drag with a mouse, a pen or a finger */
        onEnd: (event) => move(event.oldIndex, event.newIndex),
      });
    }

    const kind = $("#p-kind");
    if (kind) {
      const sync = () => toggleFields("data-for", kind.value);
      kind.addEventListener("change", sync);
      sync();
      $("#p-add").addEventListener("click", () => {
        const result = $("#p-result");
        const k = kind.value;
        const minutes = parseFloat(($("#p-minutes").value || "0").replace(",", "."));
        if (k === "asset" || k === "jingle") {
          const a = assets.get(Number($("#p-asset").value));
          if (!a) return show(result, false, "Chưa chọn âm thanh đã duyệt.");
          items.push({ kind: k, asset_id: a.id, duration_ms: a.duration_ms, label: a.title });
        } else if (k === "relay") {
          const s = sources.get(Number($("#p-source").value));
          if (!s || !(minutes > 0)) return show(result, false, "Chọn nguồn tiếp sóng và thời lượng.");
          items.push({ kind: k, source_id: s.id, duration_ms: Math.round(minutes * 60000), label: s.name });
        } else if (k === "gap") {
          if (!(minutes > 0)) return show(result, false, "Nhập thời lượng khoảng lặng.");
          items.push({ kind: k, duration_ms: Math.round(minutes * 60000) });
        } else {
          const text = $("#p-text").value.trim();
          if (!text) return show(result, false, "Nhập văn bản cần đọc.");
          items.push({ kind: k, text, voice: $("#p-voice").value, rate: Number($("#p-rate").value) || 0 });
          $("#p-text").value = "";
        }
        result.textContent = "";
        render();
      });
    }

    function payloadItems() {
      return items.map((i) => {
        let out;
        if (i.kind === "asset" || i.kind === "jingle") out = { kind: i.kind, asset_id: i.asset_id };
        else if (i.kind === "relay") out = { kind: i.kind, source_id: i.source_id, duration_ms: i.duration_ms };
        else if (i.kind === "gap") return { kind: i.kind, duration_ms: i.duration_ms };
        else out = { kind: "text", text: i.text, voice: i.voice, rate: i.rate };
        const title = (i.title || "").trim();
        if (title) out.title = title;
        return out;
      });
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = $("#p-result");
      const title = $("#p-title").value.trim();
      if (!title) return show(result, false, "Nhập tên chương trình.");
      if (!items.length) return show(result, false, "Chương trình cần ít nhất một mục.");
      const button = $("#p-save");
      button.disabled = true;
      show(result, true, "Đang lưu… (văn bản được đọc tự động, có thể mất vài giây)");
      try {
        const body = { title, items: payloadItems() };
        const owner = $("#p-owner");
        if (owner && owner.value && !data.id) body.owner_area = owner.value;
        const saved = data.id
          ? await api()("PATCH", "/api/v1/programmes/" + data.id, body)
          : await api()("POST", "/api/v1/programmes", body);
        let text = "Đã lưu chương trình “" + saved.title + "”, tổng " + duration(saved.duration_ms) + ".";
        if (saved.rules_reset && saved.rules_reset.length) text += " " + saved.rules_reset.length + " quy tắc đang dùng chương trình đã trở về chờ duyệt.";
        show(result, true, text);
        const link = document.createElement("a");
        link.href = "/lich/quy-tac/moi?chuong_trinh=" + saved.id;
        link.id = "p-make-rule";
        link.textContent = "Tạo quy tắc phát cho chương trình này";
        result.append(" ", link);
        if (!data.id) {
          data.id = saved.id;
          window.history.replaceState(null, "", "/lich/chuong-trinh/" + saved.id);
        }
        items = saved.items.map((i) => ({
          kind: i.kind, asset_id: i.asset_id, source_id: i.source_id, duration_ms: i.duration_ms,
          text: i.text, voice: i.voice || "south", rate: i.rate || 0, title: i.title,
          label: i.asset_title || i.source_name || i.title || i.text || "",
        }));
        render();
      } catch (err) {
        show(result, false, err.message);
      } finally {
        button.disabled = false;
      }
    });
    render();
  }

  /* --- rules ------------------------------------------------------------------------ */

  const list = (text) => (text || "").split(/[,;\s]+/).map((s) => s.trim()).filter(Boolean);
  const numbers = (text) => list(text).map(Number).filter((n) => Number.isInteger(n));

  function initRule() {
    const data = dataOf("rule-data");
    const form = $("#rule-form");
    if (!data || !form) return;
    const kind = $("#w-kind");
    const rule = data.rule;
    TZ = data.tz || TZ;

    function fill() {
      const chosen = new URLSearchParams(window.location.search).get("chuong_trinh");
      if (chosen && $("#r-programme option[value='" + CSS.escape(chosen) + "']")) $("#r-programme").value = chosen;
      $("#w-anchor").value = data.today;
      Object.entries({ areas: "area", groups: "group", stations: "station" }).forEach(([key, name]) => {
        (data.targets[key] || []).forEach((code) => {
          const box = $("input[name='" + name + "'][value='" + CSS.escape(code) + "']");
          if (box) box.checked = true;
        });
      });
      if (!rule) return;
      const r = rule.recurrence || {};
      const w = r.when || {};
      kind.value = w.kind || "daily";
      if (w.times) $("#w-times").value = w.times.map((t) => t.slice(0, 5)).join(", ");
      if (w.at) $("#w-at").value = String(w.at).slice(0, 16);
      (w.weekdays || []).forEach((code) => { const b = $("#w-wd-" + code); if (b) b.checked = true; });
      if (w.kind === "monthly") $("#w-mdays").value = (w.days || []).join(", ");
      if (w.n) $("#w-n").value = w.n;
      if (w.anchor) $("#w-anchor").value = w.anchor;
      if (w.kind === "lunar") {
        const days = w.days || [];
        $("#w-l1").checked = days.includes(1);
        $("#w-l15").checked = days.includes(15);
        $("#w-lother").value = days.filter((d) => d !== 1 && d !== 15).join(", ");
        $("#w-lmonths").value = (w.months || []).join(", ");
      }
      if (w.rule) $("#w-rrule").value = w.rule;
      if (r.valid_from) $("#w-from").value = String(r.valid_from).slice(0, 10);
      if (r.valid_until) $("#w-until").value = String(r.valid_until).slice(0, 10);
      $("#w-skip").value = (r.skip_dates || []).join(", ");
      $("#w-holidays").checked = Boolean(r.skip_holidays);
    }

    function recurrence() {
      const k = kind.value;
      const times = list($("#w-times").value);
      let w;
      if (k === "once") w = { kind: k, at: $("#w-at").value };
      else if (k === "daily") w = { kind: k, times };
      else if (k === "weekly") w = { kind: k, times, weekdays: $$("input[name='weekday']:checked").map((b) => b.value) };
      else if (k === "monthly") w = { kind: k, times, days: numbers($("#w-mdays").value) };
      else if (k === "every_n_days") w = { kind: k, times, n: Number($("#w-n").value), anchor: $("#w-anchor").value };
      else if (k === "lunar") {
        const days = $$("input[name='lunarday']:checked").map((b) => Number(b.value)).concat(numbers($("#w-lother").value));
        const months = numbers($("#w-lmonths").value);
        w = { kind: k, times, days };
        if (months.length) w.months = months;
      } else {
        w = { kind: "rrule", rule: $("#w-rrule").value.trim() };
        if (times.length) w.times = times;
        if ($("#w-anchor").value) w.anchor = $("#w-anchor").value;
      }
      const out = { when: w, skip_holidays: $("#w-holidays").checked };
      if ($("#w-from").value) out.valid_from = $("#w-from").value;
      if ($("#w-until").value) out.valid_until = $("#w-until").value;
      const skips = list($("#w-skip").value);
      if (skips.length) out.skip_dates = skips;
      return out;
    }

    /* the station picker: a search without diacritics over name, code and area */
    const fold = (text) => (text || "").normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/đ/g, "d").replace(/Đ/g, "D").toLowerCase().trim();
    function filterStations() {
      const q = fold($("#t-station-q").value);
      const boxes = $$("#t-station-list [data-search]");
      let shown = 0;
      boxes.forEach((node) => {
        const hit = !q || node.dataset.search.includes(q) || $("input", node).checked;
        node.hidden = !hit;
        if (hit) shown += 1;
      });
      const chosen = $$("input[name='station']:checked").length;
      $("#t-station-count").textContent = "Hiện " + shown + "/" + boxes.length + " trạm · đã chọn " + chosen + ".";
    }
    if ($("#t-station-q")) {
      $("#t-station-q").addEventListener("input", filterStations);
      $("#t-station-list").addEventListener("change", filterStations);
    }

    function minutesToSeconds(text) {
      const value = (text || "").trim().replace(",", ".");
      if (!value) return null;
      const minutes = Number(value);
      return Number.isFinite(minutes) ? Math.round(minutes * 60) : value;  /* the API says what is wrong */
    }

    function body() {
      const volume = $("#r-volume").value;
      const order = $("#r-order").value.trim();
      const out = {
        title: $("#r-title").value.trim() || "(chưa đặt tên)",
        programme_id: Number($("#r-programme").value),
        tier: $("#r-tier").value,
        volume: volume === "" ? null : Number(volume),
        shift_tolerance_s: Math.max(0, Math.round(Number($("#r-shift").value || 0) * 60)),
        enabled: $("#r-enabled").checked,
        order: order === "" ? 0 : Number(order),
        slot_s: minutesToSeconds($("#r-slot").value),
        recurrence: recurrence(),
        targets: {
          areas: $$("input[name='area']:checked").map((b) => b.value),
          groups: $$("input[name='group']:checked").map((b) => b.value),
          stations: $$("input[name='station']:checked").map((b) => b.value),
        },
      };
      const owner = $("#r-owner");
      if (owner && owner.value && !data.id) out.owner_area = owner.value;
      return out;
    }

    function conflictLine(c, mine) {
      const li = document.createElement("li");
      li.className = "sch-conflict sch-" + c.outcome;
      const what = c.outcome === "dropped" ? "Bị bỏ" : "Bị dời giờ";
      const strong = document.createElement("strong");
      strong.textContent = what + ": ";
      li.append(strong, (mine ? "quy tắc này" : "“" + c.rule_title + "”") + " lúc " + when(c.occurrence_start, true)
        + (c.new_start ? " → " + when(c.new_start) : "") + " — nhường cho “" + c.winner_rule_title + "” ("
        + when(c.winner_occurrence_start) + "). " + c.reason_vi + ". " + c.station_count + " trạm.");
      return li;
    }

    let latest = null;
    let seq = 0;
    let timer = null;

    async function preview() {
      const status = $("#pv-status");
      const b = body();
      if (!b.programme_id || (!b.targets.areas.length && !b.targets.groups.length && !b.targets.stations.length)) {
        latest = null;
        $("#pv-body").hidden = true;
        status.textContent = "Chọn chương trình, giờ và nơi phát để xem trước.";
        return null;
      }
      const mine = ++seq;
      status.textContent = "Đang tính…";
      try {
        const url = "/api/v1/schedules/preview" + (data.id ? "?rule_id=" + data.id : "");
        const result = await api()("POST", url, b);
        if (mine !== seq) return latest;
        latest = result;
        $("#pv-summary").textContent = result.station_count + " trạm · mỗi lần phát " + duration(result.duration_ms)
          + " · " + result.occurrences.length + " lần trong 7 ngày tới.";
        const occ = $("#pv-occurrences");
        occ.replaceChildren(...result.occurrences.slice(0, 14).map((t) => {
          const li = document.createElement("li"); li.textContent = when(t, true); return li;
        }));
        if (!result.occurrences.length) occ.append(Object.assign(document.createElement("li"), { textContent: "Không có lần phát nào trong 7 ngày tới." }));
        const pl = $("#pv-placements");
        pl.replaceChildren(...result.placements.slice(0, 20).map((p) => {
          const li = document.createElement("li");
          li.textContent = when(p.start_at, true) + "–" + when(p.end_at) + " trên " + p.station_count + " trạm" + (p.shifted ? " (bị dời giờ)" : "");
          return li;
        }));
        if (!result.placements.length) pl.append(Object.assign(document.createElement("li"), { textContent: "Không trạm nào phát quy tắc này trong 7 ngày tới." }));
        const cf = $("#pv-conflicts");
        cf.replaceChildren(...result.suffered.map((c) => conflictLine(c, true)), ...result.caused.map((c) => conflictLine(c, false)));
        const count = result.suffered.length + result.caused.length;
        if (!count) cf.append(Object.assign(document.createElement("li"), { textContent: "Không có xung đột." }));
        $("#pv-body").hidden = false;
        const ack = $("#ack-box");
        if (ack) { ack.hidden = !count; if (!count) $("#r-ack").checked = false; }
        status.textContent = count ? "Có " + count + " xung đột: xem bên dưới trước khi lưu." : "Không có xung đột.";
        status.className = count ? "bad-text" : "ok-text";
        return result;
      } catch (err) {
        if (mine !== seq) return latest;
        latest = null;
        $("#pv-body").hidden = true;
        status.className = "bad-text";
        status.textContent = err.message;
        return null;
      }
    }

    function schedule() {
      window.clearTimeout(timer);
      timer = window.setTimeout(preview, 400);
    }

    const sync = () => toggleFields("data-when", kind.value);
    kind.addEventListener("change", sync);
    form.addEventListener("input", (event) => { if (event.target.id !== "r-ack") schedule(); });
    form.addEventListener("change", (event) => { if (event.target.id !== "r-ack") schedule(); });
    fill();
    sync();
    if ($("#t-station-q")) filterStations();
    preview();

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = $("#r-result");
      if (!result) return;
      window.clearTimeout(timer);
      const checked = await preview();
      if (!checked) return show(result, false, "Chưa lưu: sửa các ô còn thiếu hoặc sai (xem phần xem trước).");
      const count = checked.suffered.length + checked.caused.length;
      if (count && !$("#r-ack").checked) {
        $("#preview").scrollIntoView();
        return show(result, false, "Chưa lưu: quy tắc này có " + count + " xung đột. Xem phần xung đột, rồi đánh dấu “Tôi đã xem” nếu vẫn muốn lưu.");
      }
      const button = event.submitter || $("#r-save");
      button.disabled = true;
      try {
        const b = body();
        b.title = $("#r-title").value.trim();
        if (!b.title) throw new Error("Nhập tên quy tắc.");
        /* "Lưu nháp" keeps it as the author's draft; "Lưu và gửi duyệt" sends it */
        const choice = button.dataset.submitChoice;
        if (choice) b.submit = choice === "true";
        const saved = data.id
          ? await api()("PATCH", "/api/v1/schedules/rules/" + data.id, b)
          : await api()("POST", "/api/v1/schedules/rules", b);
        const states = {
          approved: ".",
          draft: ": đang chờ duyệt.",
          unsubmitted: ": lưu nháp, chưa gửi duyệt (không được phát).",
          rejected: ": vẫn ở trạng thái bị từ chối.",
        };
        show(result, true, "Đã lưu quy tắc “" + saved.title + "”" + (states[saved.approval] || "."));
        if (!data.id) {
          data.id = saved.id;
          window.history.replaceState(null, "", "/lich/quy-tac/" + saved.id);
        }
      } catch (err) {
        show(result, false, err.message);
      } finally {
        button.disabled = false;
      }
    });
  }

  /* "Gửi duyệt": the author's draft rule (or a rejected one) sent for approval */
  function initRuleSubmit() {
    const button = $("#r-submit");
    if (!button) return;
    button.addEventListener("click", async () => {
      const result = $("#r-result");
      button.disabled = true;
      try {
        await api()("POST", "/api/v1/schedules/rules/" + button.dataset.ruleId + "/submit", {});
        window.location.reload();
      } catch (err) {
        show(result, false, err.message);
        button.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    initProgramme();
    initRule();
    initRuleSubmit();
  });
})();
