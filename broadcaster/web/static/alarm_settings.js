/* broadcaster dashboard: alarm settings (/canh-bao/thiet-lap) and a station's own
 * thresholds (/tram/{sid}), through the JSON API with the session cookie
 * (window.broadcasterUi from app.js: the JSON client, its Vietnamese messages, the
 * confirmation dialog):
 *   - subscriptions: POST /api/v1/alarms/subscriptions (a webhook's HMAC key is shown
 *     once, from the answer), DELETE /api/v1/alarms/subscriptions/{id} after confirming;
 *   - thresholds: PUT /api/v1/alarms/thresholds/kinds/{kind} and
 *     /api/v1/alarms/thresholds/stations/{sid} (an empty field removes the override;
 *     out of range: the API's Vietnamese message beside the form, nothing saved). */
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  // app.js is loaded first (deferred scripts run in order); read it when used
  const ui = () => window.broadcasterUi;

  function say(node, text, bad) {
    if (!node) return;
    node.textContent = text;
    node.classList.toggle("bad-text", Boolean(bad));
  }

  function showError(node, text) {
    node.textContent = text;
    node.hidden = !text;
  }

  // a number as the page writes it ("%g": 600, 11.8)
  const num = (value) => String(Number(value));

  /* --- thresholds: one form per station kind, and the station page's form ---------- */

  function initThresholdForms() {
    document.querySelectorAll("form[data-threshold-kind], form[data-threshold-station]").forEach((form) => {
      const kind = form.dataset.thresholdKind;
      const sid = form.dataset.thresholdStation;
      const url = kind
        ? "/api/v1/alarms/thresholds/kinds/" + encodeURIComponent(kind)
        : "/api/v1/alarms/thresholds/stations/" + encodeURIComponent(sid);
      const error = $("p[role=alert]", form);
      const result = $(".command-result", form);
      const button = $("button[type=submit]", form);
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        showError(error, "");
        say(result, "");
        const thresholds = {};
        for (const input of form.querySelectorAll("input[name]")) {
          input.removeAttribute("aria-invalid");
          input.removeAttribute("aria-describedby");
          const text = input.value.trim().replace(",", ".");
          if (!text) {
            thresholds[input.name] = null;  // no value of its own: the override is removed
          } else if (Number.isFinite(Number(text))) {
            thresholds[input.name] = Number(text);
          } else {
            input.setAttribute("aria-invalid", "true");
            showError(error, "Giá trị ngưỡng phải là một số.");
            input.focus();
            return;
          }
        }
        button.disabled = true;
        say(result, "Đang lưu…");
        try {
          const data = await ui().api("PUT", url, { thresholds });
          const effective = kind ? data.kinds[kind].effective : data.effective;
          for (const [key, value] of Object.entries(effective)) {
            const cell = $("tr[data-key='" + key + "'] td:last-child", form);
            if (cell) cell.textContent = num(value);
          }
          say(result, "Đã lưu ngưỡng cảnh báo (" + form.dataset.label + ").");
        } catch (err) {
          say(result, "");
          showError(error, err.message + " — Chưa lưu thay đổi nào.");
          // point at the fields outside their range (the message names the threshold)
          for (const input of form.querySelectorAll("input[name]")) {
            const value = thresholds[input.name];
            if (value !== null && (value < Number(input.min) || value > Number(input.max))) {
              input.setAttribute("aria-invalid", "true");
              input.setAttribute("aria-describedby", error.id);
            }
          }
        } finally {
          button.disabled = false;
        }
      });
    });
  }

  /* --- subscriptions ------------------------------------------------------------------ */

  function localTime(iso) {
    const parts = {};
    new Intl.DateTimeFormat("en-GB", {
      timeZone: ui().tz, hour: "2-digit", minute: "2-digit",
      day: "2-digit", month: "2-digit", year: "numeric", hourCycle: "h23",
    }).formatToParts(new Date(iso)).forEach((p) => { parts[p.type] = p.value; });
    return parts.hour + ":" + parts.minute + " " + parts.day + "/" + parts.month + "/" + parts.year;
  }

  function cell(...children) {
    const td = document.createElement("td");
    td.append(...children);
    return td;
  }

  function span(className, text) {
    const node = document.createElement("span");
    node.className = className;
    node.textContent = text;
    return node;
  }

  // the table's row of a new subscription, as the page renders its rows
  function subscriptionRow(sub, labels) {
    const row = document.createElement("tr");
    const first = cell(sub.name, document.createElement("br"), span("muted small", "tạo lúc " + localTime(sub.created_at)));
    first.dataset.subscriptionId = sub.id;
    first.dataset.name = sub.name;
    first.dataset.target = sub.target;
    const target = document.createElement("code");
    target.className = "small";
    target.style.wordBreak = "break-all";
    target.textContent = sub.target;
    const level = { critical: "badge bad", warning: "badge warn" }[sub.min_severity] || "badge";
    row.append(
      first,
      cell(labels.channels[sub.channel] || sub.channel),
      cell(target),
      cell(sub.area ? sub.area.name : labels.all_areas),
      cell(span(level, labels.severities[sub.min_severity] || sub.min_severity)),
      cell(sub.enabled ? span("badge ok", "Đang bật") : span("badge", "Đã tắt")));
    if (labels.can_delete) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary";
      button.dataset.deleteSubscription = sub.id;
      button.setAttribute("aria-label", "Xóa đăng ký " + sub.name);
      button.textContent = "Xóa";
      row.append(cell(button));
    }
    return row;
  }

  function initSubscriptions() {
    const table = $("#subscriptions-table");
    const data = $("#alarm-settings-data");
    if (!table || !data) return;
    const labels = JSON.parse(data.textContent);
    const body = $("tbody", table);
    const result = $("#subscription-result");
    const secretBox = $("#webhook-secret");

    table.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-delete-subscription]");
      if (!button) return;
      const row = button.closest("tr");
      const first = row.firstElementChild;
      const ok = await ui().confirmDialog({
        title: "Xóa đăng ký nhận cảnh báo",
        lines: [
          "Xóa đăng ký “" + first.dataset.name + "”?",
          "Địa chỉ " + first.dataset.target + " sẽ không nhận cảnh báo nữa.",
        ],
        okLabel: "Xóa đăng ký",
        danger: true,
      });
      if (!ok) return;
      button.disabled = true;
      try {
        await ui().api("DELETE", "/api/v1/alarms/subscriptions/" + encodeURIComponent(button.dataset.deleteSubscription));
        row.remove();
        if (!body.querySelector("td[data-subscription-id]")) {
          const empty = document.createElement("tr");
          const td = cell("Chưa có đăng ký nhận cảnh báo nào.");
          td.colSpan = table.querySelectorAll("thead th").length;
          td.className = "muted";
          empty.append(td);
          body.replaceChildren(empty);
        }
        say(result, "Đã xóa đăng ký “" + first.dataset.name + "”.");
      } catch (err) {
        say(result, err.message, true);
        button.disabled = false;
      }
    });

    const form = $("#subscription-form");
    if (!form) return;
    const error = $("#subscription-error");
    const submit = $("#create-subscription");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      showError(error, "");
      const name = form.elements.name.value.trim();
      const target = form.elements.target.value.trim();
      if (!name || !target) {
        showError(error, !name ? "Hãy nhập tên đăng ký." : "Hãy nhập địa chỉ nhận (e-mail hoặc URL webhook).");
        (!name ? form.elements.name : form.elements.target).focus();
        return;
      }
      const payload = {
        name,
        channel: form.elements.channel.value,
        target,
        area_code: form.elements.area_code.value || null,
        min_severity: form.elements.min_severity.value,
      };
      submit.disabled = true;
      say(result, "Đang thêm…");
      try {
        const created = await ui().api("POST", "/api/v1/alarms/subscriptions", payload);
        if (!body.querySelector("td[data-subscription-id]")) body.replaceChildren();
        body.append(subscriptionRow(created, labels));
        say(result, "Đã thêm đăng ký “" + created.name + "”.");
        if (created.secret) {
          $("#webhook-secret-name").textContent = created.name;
          $("#webhook-secret-value").textContent = created.secret;
          secretBox.hidden = false;
          secretBox.setAttribute("tabindex", "-1");
          secretBox.scrollIntoView({ block: "center" });
          secretBox.focus({ preventScroll: true });
        } else {
          secretBox.hidden = true;
        }
        form.elements.name.value = "";
        form.elements.target.value = "";
      } catch (err) {
        say(result, "");
        showError(error, err.message);
      } finally {
        submit.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    initSubscriptions();
    initThresholdForms();
  });
})();
