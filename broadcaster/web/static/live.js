/* Live paging (/truc-tiep): the microphone to /api/v1/live/audio (WebSocket, MediaRecorder
   WebM/Opus chunks every 250 ms), or a stream URL to POST /api/v1/live/relays. */
(function () {
  "use strict";
  const form = document.getElementById("live-form");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const startButton = $("live-start");
  const stopButton = $("live-stop");
  const errorBox = $("live-error");
  const statusCard = $("live-status-card");
  const statusText = $("live-status");
  const clock = $("live-clock");
  const level = $("live-level");
  const progress = $("live-progress");
  let socket = null;
  let recorder = null;
  let media = null;
  let audioContext = null;
  let timer = null;
  let broadcastId = null;
  let startedAt = 0;

  function chosenAreas() {
    return Array.from(form.querySelectorAll('input[name="areas"]:checked')).map((i) => i.value);
  }

  function updateCount() {
    let n = 0;
    form.querySelectorAll('input[name="areas"]:checked').forEach((i) => { n += Number(i.dataset.stations || 0); });
    $("live-count").textContent = String(n);
  }

  function source() {
    return form.querySelector('input[name="source"]:checked').value;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    errorBox.focus();
  }

  function problemText(problem) {
    return (problem && (problem.message_vi || problem.detail)) || "Không phát trực tiếp được.";
  }

  function setRunning(running) {
    startButton.hidden = running;
    stopButton.hidden = !running;
    form.querySelectorAll("fieldset").forEach((f) => { f.disabled = running; });
    statusCard.hidden = !running && !broadcastId;
  }

  function tick() {
    const s = Math.floor((Date.now() - startedAt) / 1000);
    clock.textContent = String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  }

  function onAir(frame) {
    broadcastId = frame.broadcast_id;
    startedAt = Date.now();
    timer = setInterval(tick, 500);
    statusText.textContent = "Đang phát tới " + frame.stations + " trạm — mời bắt đầu nói.";
    progress.href = "/phat-thanh/" + frame.broadcast_id;
    progress.hidden = false;
    document.body.dataset.liveBroadcast = String(frame.broadcast_id);
    statusCard.hidden = false;
    statusCard.scrollIntoView({ block: "nearest" });
  }

  function finish(text) {
    if (timer) clearInterval(timer);
    timer = null;
    if (recorder && recorder.state !== "inactive") recorder.stop();
    if (media) media.getTracks().forEach((t) => t.stop());
    if (audioContext) audioContext.close();
    recorder = null; media = null; audioContext = null;
    if (socket && socket.readyState <= 1) socket.close();
    socket = null;
    statusText.textContent = text;
    level.value = 0;
    setRunning(false);
    statusCard.hidden = false;
    document.body.dataset.liveEnded = "1";
  }

  function meter(stream) {
    try {
      audioContext = new AudioContext();
      const analyser = audioContext.createAnalyser();
      analyser.fftSize = 512;
      audioContext.createMediaStreamSource(stream).connect(analyser);
      const data = new Uint8Array(analyser.fftSize);
      const draw = () => {
        if (!audioContext) return;
        analyser.getByteTimeDomainData(data);
        let peak = 0;
        for (const v of data) peak = Math.max(peak, Math.abs(v - 128) / 128);
        level.value = peak;
        requestAnimationFrame(draw);
      };
      draw();
    } catch (e) { /* the meter is a nicety */ }
  }

  async function startMic() {
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      showError("Trình duyệt này không hỗ trợ thu âm từ micrô.");
      return;
    }
    try {
      media = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
    } catch (e) {
      showError("Không mở được micrô: hãy cho phép trang dùng micrô.");
      return;
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/api/v1/live/audio");
    socket.binaryType = "arraybuffer";
    setRunning(true);
    statusText.textContent = "Đang kết nối tới máy chủ…";
    socket.onopen = () => {
      socket.send(JSON.stringify({
        targets: { areas: chosenAreas() },
        tier: form.querySelector('input[name="tier"]:checked').value,
        title: $("live-title").value.trim() || null,
      }));
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "ready") {
        statusText.textContent = "Đang gửi tín hiệu tới " + frame.stations + " trạm…";
        const type = MediaRecorder.isTypeSupported("audio/webm;codecs=opus") ? "audio/webm;codecs=opus" : "";
        recorder = new MediaRecorder(media, type ? { mimeType: type, audioBitsPerSecond: 32000 } : {});
        recorder.ondataavailable = (e) => {
          if (e.data.size && socket && socket.readyState === 1) e.data.arrayBuffer().then((b) => socket && socket.send(b));
        };
        recorder.start(250);
        meter(media);
      } else if (frame.type === "live") {
        onAir(frame);
      } else if (frame.type === "ended") {
        finish("Đã kết thúc phát trực tiếp; các trạm đã được lệnh dừng.");
      } else if (frame.type === "error") {
        finish("Không phát được.");
        showError(problemText(frame));
      }
    };
    socket.onclose = () => {
      if (socket) finish("Mất kết nối tới máy chủ; các trạm sẽ dừng trong vài giây.");
    };
  }

  async function startRelay() {
    setRunning(true);
    statusText.textContent = "Đang mở luồng…";
    const minutes = Number($("live-minutes").value || 30);
    const response = await fetch("/api/v1/live/relays", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        targets: { areas: chosenAreas() },
        tier: form.querySelector('input[name="tier"]:checked').value,
        title: $("live-title").value.trim() || null,
        url: $("live-url").value.trim(),
        max_s: Math.max(10, Math.round(minutes * 60)),
      }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      finish("Không phát được.");
      showError(problemText(body));
      return;
    }
    onAir(body);
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "areas") updateCount();
    if (event.target.name === "source") {
      form.querySelector('[data-source="url"]').hidden = source() !== "url";
    }
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    broadcastId = null;
    delete document.body.dataset.liveEnded;
    if (!chosenAreas().length) {
      showError("Chọn ít nhất một ấp, khu phố.");
      return;
    }
    if (source() === "url") startRelay(); else startMic();
  });

  stopButton.addEventListener("click", async () => {
    if (socket && socket.readyState === 1) {
      socket.send(JSON.stringify({ type: "stop" }));
      statusText.textContent = "Đang dừng…";
      return;
    }
    if (broadcastId) {
      await fetch("/api/v1/broadcasts/" + broadcastId + "/stop", { method: "POST" });
      finish("Đã kết thúc tiếp sóng; các trạm đã được lệnh dừng.");
    }
  });
})();
