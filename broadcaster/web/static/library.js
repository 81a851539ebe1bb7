/* broadcaster dashboard: the audio library (/thu-vien) and the approval queue (/duyet).
 * Small vanilla JavaScript, no build step.  Everything goes through the JSON API with the
 * session cookie (same origin: the browser sends Origin on POST, as the CSRF check needs). */
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const MB = 1024 * 1024;

  const shared = window.broadcasterUi;  // app.js: the JSON API, the confirmation dialog
  const api = shared.api;

  function messageOf(data, status) {
    if (status === 413) return "Tệp quá lớn (tối đa 200 MB).";
    return shared.messageOf(data, status);
  }

  function parse(text) {
    try { return text ? JSON.parse(text) : null; } catch (err) { return null; }
  }

  /* A multipart upload with its progress (fetch cannot report upload progress). */
  function upload(form, progress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/v1/media");
      xhr.setRequestHeader("Accept", "application/json");
      progress.hidden = false;
      progress.value = 0;
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) progress.value = Math.round((event.loaded / event.total) * 100);
      });
      xhr.addEventListener("load", () => {
        progress.value = 100;
        const data = parse(xhr.responseText);
        if (xhr.status >= 200 && xhr.status < 300) resolve(data);
        else reject(new Error(messageOf(data, xhr.status)));
      });
      xhr.addEventListener("error", () => reject(new Error("Không kết nối được tới máy chủ. Kiểm tra mạng rồi thử lại.")));
      xhr.send(form);
    });
  }

  const decimal = (value) => (value === null || value === undefined ? "—"
    : value.toFixed(1).replace("-", "−").replace(".", ","));

  function seconds(ms) {
    const s = Math.round((ms || 0) / 1000);
    return s < 60 ? s + " giây" : Math.floor(s / 60) + " phút " + String(s % 60).padStart(2, "0") + " giây";
  }

  /* "Lưu nháp" (a button with data-draft) keeps the new asset as its author's draft. */
  const asDraft = (event) => Boolean(event.submitter && event.submitter.dataset.draft);

  function waiting(asset) {
    if (asset.approval === "unsubmitted") return " Đã lưu nháp: chưa gửi duyệt; bấm “Gửi duyệt” khi sẵn sàng.";
    if (asset.approval === "approved") return " Đã được duyệt.";
    if (asset.approval === "rejected") return " Đã bị từ chối.";
    return " Bản tin đang chờ duyệt.";
  }

  /* What the operator learns once a file is in the library. */
  function saved(result, asset, again) {
    result.replaceChildren();
    result.className = "lib-result ok-text";
    const link = document.createElement("a");
    link.href = "/thu-vien/" + asset.id;
    link.textContent = asset.title;
    result.append(again ? "Tệp này đã có trong thư viện: " : "Đã lưu “", link,
      (again ? "" : "”") + " · " + seconds(asset.duration_ms) + " · độ lớn " + decimal(asset.loudness_before)
      + " LUFS → " + decimal(asset.loudness_after) + " LUFS (đã chuẩn hóa)." + waiting(asset));
  }

  function failed(result, err) {
    result.className = "lib-result bad-text";
    result.textContent = err.message;
  }

  /* --- waveform and player ------------------------------------------------------ */

  async function drawWave(canvas, url) {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    canvas.dataset.drawn = "";
    const data = await api("GET", url);
    const peaks = data.peaks || [];
    const mid = canvas.height / 2;
    const step = canvas.width / Math.max(1, peaks.length);
    ctx.fillStyle = getComputedStyle(canvas).color || "#1f5f8b";
    peaks.forEach((p, i) => {
      const h = Math.max(1, p * (canvas.height - 4));
      ctx.fillRect(i * step, mid - h / 2, Math.max(1, step - 1), h);
    });
    canvas.dataset.drawn = String(peaks.length);
  }

  function initPlayer() {
    const panel = $("#player");
    const audio = $("#player-audio");
    const canvas = $("#player-wave");
    if (canvas && canvas.dataset.peaks) drawWave(canvas, canvas.dataset.peaks).catch(() => {});
    if (!panel) return;
    for (const button of $$(".lib-play")) {
      button.addEventListener("click", () => {
        panel.hidden = false;
        $("#player-name").textContent = button.dataset.title;
        audio.src = button.dataset.play;
        audio.play().catch(() => {});
        drawWave(canvas, button.dataset.peaks).catch(() => {});
        panel.scrollIntoView({ block: "nearest" });
      });
    }
  }

  /* --- upload ------------------------------------------------------------------- */

  function initUpload() {
    const form = $("#upload-form");
    if (!form) return;
    const fileInput = $("#up-file");
    fileInput.addEventListener("change", () => {
      const file = fileInput.files[0];
      if (file && !$("#up-title").value) $("#up-title").value = file.name.replace(/\.[^.]+$/, "");
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = $("#up-result");
      const file = fileInput.files[0];
      const limit = Number(fileInput.dataset.maxMb) * MB;
      if (file && file.size > limit) {
        failed(result, new Error("Tệp quá lớn (" + Math.round(file.size / MB) + " MB; tối đa 200 MB)."));
        return;
      }
      const data = new FormData();
      data.append("file", file);
      data.append("title", $("#up-title").value);
      data.append("category", $("#up-category").value);
      data.append("tags", $("#up-tags").value);
      if (asDraft(event)) data.append("submit", "false");
      $("#up-submit").disabled = true;
      $("#up-keep").disabled = true;
      result.className = "lib-result";
      result.textContent = "Đang tải lên và chuẩn hóa độ lớn…";
      try {
        saved(result, await upload(data, $("#up-progress")));
      } catch (err) {
        failed(result, err);
      } finally {
        $("#up-submit").disabled = false;
        $("#up-keep").disabled = false;
      }
    });
  }

  /* --- recording -------------------------------------------------------------------- */

  function initRecorder() {
    const form = $("#record-form");
    if (!form) return;
    const start = $("#rec-start");
    const stop = $("#rec-stop");
    const save = $("#rec-save");
    const draft = $("#rec-keep");
    const state = $("#rec-state");
    const level = $("#rec-level");
    const audio = $("#rec-audio");
    let recorder = null;
    let stream = null;
    let blob = null;
    let meter = null;

    function stopMeter() {
      if (meter) { cancelAnimationFrame(meter.frame); meter.context.close(); meter = null; }
      level.style.width = "0";
    }

    function startMeter(source) {
      const context = new AudioContext();
      const analyser = context.createAnalyser();
      analyser.fftSize = 1024;
      context.createMediaStreamSource(source).connect(analyser);
      const samples = new Float32Array(analyser.fftSize);
      meter = { context, frame: 0 };
      const tick = () => {
        analyser.getFloatTimeDomainData(samples);
        let peak = 0;
        for (const s of samples) peak = Math.max(peak, Math.abs(s));
        level.style.width = Math.min(100, Math.round(peak * 100)) + "%";
        level.dataset.peak = String(peak);
        meter.frame = requestAnimationFrame(tick);
      };
      tick();
    }

    start.addEventListener("click", async () => {
      if (!navigator.mediaDevices || !window.MediaRecorder) {
        state.textContent = "Trình duyệt này không hỗ trợ ghi âm.";
        return;
      }
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (err) {
        state.textContent = "Không dùng được micrô: hãy cho phép trình duyệt dùng micrô rồi thử lại.";
        return;
      }
      blob = null;
      audio.hidden = true;
      save.disabled = true;
      draft.disabled = true;
      const chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.addEventListener("dataavailable", (e) => { if (e.data.size) chunks.push(e.data); });
      recorder.addEventListener("stop", () => {
        blob = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
        audio.src = URL.createObjectURL(blob);
        audio.hidden = false;
        save.disabled = false;
        draft.disabled = false;
        state.textContent = "Đã ghi xong. Nghe lại, ghi lại, hoặc lưu bản ghi.";
        start.textContent = "Ghi lại";
      });
      recorder.start(250);
      startMeter(stream);
      start.disabled = true;
      stop.disabled = false;
      state.textContent = "Đang ghi… nói vào micrô.";
    });

    stop.addEventListener("click", () => {
      if (recorder && recorder.state !== "inactive") recorder.stop();
      if (stream) stream.getTracks().forEach((t) => t.stop());
      stopMeter();
      start.disabled = false;
      stop.disabled = true;
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = $("#rec-result");
      if (!blob) return;
      const title = $("#rec-title-input").value.trim();
      if (!title) { failed(result, new Error("Hãy đặt tiêu đề cho bản ghi.")); return; }
      const ext = (blob.type.includes("ogg") ? "ogg" : blob.type.includes("mp4") ? "m4a" : "webm");
      const data = new FormData();
      data.append("file", blob, "ghi-am." + ext);
      data.append("title", title);
      data.append("category", $("#rec-category").value);
      if (asDraft(event)) data.append("submit", "false");
      save.disabled = true;
      draft.disabled = true;
      result.className = "lib-result";
      result.textContent = "Đang lưu và chuẩn hóa độ lớn…";
      try {
        saved(result, await upload(data, $("#rec-progress")));
      } catch (err) {
        failed(result, err);
        save.disabled = false;
        draft.disabled = false;
      }
    });
  }

  /* --- text to speech ------------------------------------------------------------------ */

  function initSpeech() {
    const form = $("#tts-form");
    if (!form) return;
    const result = $("#tts-result");
    const fields = () => ({
      text: $("#tts-text").value,
      voice: $("#tts-voice").value,
      rate: Number($("#tts-rate").value),
    });
    $("#tts-listen").addEventListener("click", async () => {
      const button = $("#tts-listen");
      button.disabled = true;
      result.className = "lib-result";
      result.textContent = "Đang đọc thử…";
      try {
        const preview = await api("POST", "/api/v1/media/tts/preview", fields());
        $("#tts-normalized").textContent = preview.normalized_text;
        const audio = $("#tts-audio");
        audio.src = preview.audio_url;
        $("#tts-preview").hidden = false;
        result.textContent = "Bản đọc thử dài " + seconds(preview.duration_ms) + ". Nghe rồi bấm “Lưu bản tin”.";
        audio.play().catch(() => {});
      } catch (err) {
        failed(result, err);
      } finally {
        button.disabled = false;
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = fields();
      const title = $("#tts-title-input").value.trim();
      if (title) body.title = title;
      body.category = $("#tts-category").value;
      if (asDraft(event)) body.submit = false;
      $("#tts-save").disabled = true;
      $("#tts-keep").disabled = true;
      result.className = "lib-result";
      result.textContent = "Đang lưu bản tin…";
      try {
        saved(result, await api("POST", "/api/v1/media/tts", body));
      } catch (err) {
        failed(result, err);
      } finally {
        $("#tts-save").disabled = false;
        $("#tts-keep").disabled = false;
      }
    });
  }

  /* --- one asset: edit and delete ------------------------------------------------------- */

  function initEdit() {
    const form = $("#edit-form");
    if (!form) return;
    const id = form.dataset.assetId;
    const result = $("#ed-result");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const tags = $("#ed-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
      const body = { title: $("#ed-title").value.trim(), category: $("#ed-category").value, tags };
      /* "Lưu và gửi duyệt" / "Lưu nháp": the state changes too (the page shows it anew) */
      const choice = event.submitter && event.submitter.dataset.submitChoice;
      if (choice) body.submit = choice === "true";
      try {
        const asset = await api("PATCH", "/api/v1/media/" + id, body);
        $("#asset-title").textContent = asset.title;
        result.className = "lib-result ok-text";
        result.textContent = "Đã lưu thay đổi." + (choice ? waiting(asset) : "");
        if (choice) window.location.reload();
      } catch (err) {
        failed(result, err);
      }
    });
    $("#ed-delete").addEventListener("click", async () => {
      const sure = await shared.confirmDialog({
        title: "Xóa tệp âm thanh",
        text: "Xóa “" + $("#asset-title").textContent + "” khỏi thư viện? Không thể hoàn tác.",
        okLabel: "Xóa",
        danger: true,
      });
      if (!sure) return;
      try {
        await api("DELETE", "/api/v1/media/" + id);
        window.location.assign("/thu-vien");
      } catch (err) {
        failed(result, err);
      }
    });
  }

  /* --- "Gửi duyệt": an author's draft (or a rejected asset) sent for approval -------------- */

  function initSubmit() {
    for (const button of $$("[data-submit]")) {
      button.addEventListener("click", async () => {
        const result = button.id === "asset-submit" ? $("#asset-submit-result") : button.nextElementSibling;
        button.disabled = true;
        try {
          await api("POST", "/api/v1/media/" + button.dataset.submit + "/submit", {});
          if (button.id === "asset-submit") { window.location.reload(); return; }
          const badge = button.parentElement.querySelector(".badge");
          badge.className = "badge lib-draft";
          badge.textContent = "Chờ duyệt";
          button.hidden = true;
          result.className = "lib-result small ok-text";
          result.textContent = "Đã gửi duyệt.";
        } catch (err) {
          failed(result, err);
          button.disabled = false;
        }
      });
    }
  }

  /* --- the approval queue ------------------------------------------------------------------ */

  function initQueue() {
    for (const form of $$(".lib-decide")) {
      const base = form.dataset.kind === "rule"
        ? "/api/v1/schedules/rules/" + form.dataset.id : "/api/v1/media/" + form.dataset.id;
      const result = $(".lib-result", form);
      for (const button of $$("button[data-decision]", form)) {
        button.addEventListener("click", async () => {
          const decision = button.dataset.decision;
          const note = form.elements.note.value.trim();
          if (decision === "reject" && !note) {
            failed(result, new Error("Hãy ghi lý do từ chối để người tạo biết cần sửa gì."));
            form.elements.note.focus();
            return;
          }
          $$("button", form).forEach((b) => { b.disabled = true; });
          try {
            await api("POST", base + "/" + decision, note ? { note } : {});
            result.className = "lib-result ok-text";
            result.textContent = decision === "approve" ? "Đã duyệt." : "Đã từ chối: " + note;
            form.closest(".lib-review").classList.add("lib-decided");
          } catch (err) {
            failed(result, err);
            $$("button", form).forEach((b) => { b.disabled = false; });
          }
        });
      }
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    initPlayer();
    initUpload();
    initRecorder();
    initSpeech();
    initEdit();
    initSubmit();
    initQueue();
  });
})();
