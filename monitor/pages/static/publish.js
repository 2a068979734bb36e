// The built-in WHIP publisher (RFC 9725): no external requests, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const streamId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const defaultEndpoint = new URL(`/whip/${encodeURIComponent(streamId)}`, location.origin).href;
const saved = JSON.parse(sessionStorage.getItem("whip-publisher") || "{}");
let pc = null, media = null, session = null, timer = null;

$("stream-id").textContent = streamId;
document.title = `Publish ${streamId} · deepfake monitor`;
$("endpoint").value = params.get("endpoint") || saved.endpoint || defaultEndpoint;
$("source").value = saved.source || "display";
$("codec").value = saved.codec || "";
if (saved.token) { $("token").value = saved.token; $("remember").checked = true; }

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

function capture() {
  if (!window.isSecureContext) {
    return "Browsers allow camera and screen capture only on secure pages. Open this page over https:// " +
      "(the monitor's [http] TLS settings) or on the monitor's own machine as http://127.0.0.1.";
  }
  if (!navigator.mediaDevices || !window.RTCPeerConnection) {
    return "This browser has no camera/screen capture or no WebRTC.";
  }
  return null;
}

const problem = capture();
if (problem) {
  $("unavailable").hidden = false;
  $("unavailable-reason").textContent = problem;
  $("start").disabled = true;
}

function remember(publishing) {
  const keep = { endpoint: $("endpoint").value, source: $("source").value, codec: $("codec").value, publishing };
  if ($("remember").checked) keep.token = $("token").value;  // sessionStorage only, never the URL
  sessionStorage.setItem("whip-publisher", JSON.stringify(keep));
}

function headers(extra = {}) {
  const token = $("token").value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function listCameras() {
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const d of devices.filter((d) => d.kind === "videoinput" && d.deviceId)) {
      const option = new Option(d.label || `camera ${$("camera").length}`, d.deviceId);
      $("camera").add(option);
    }
  } catch (e) { /* listing is a convenience */ }
}

function showSource() {
  $("camera-row").hidden = $("source").value !== "camera";
}
$("source").addEventListener("change", showSource);
showSource();
if (!problem) listCameras();

function waitForIce(connection, ms) {
  if (connection.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (connection.iceGatheringState === "complete") { clearTimeout(t); resolve(); } };
    const t = setTimeout(resolve, ms);  // send what was gathered: the answer needs no trickle
    connection.addEventListener("icegatheringstatechange", done);
  });
}

const WHY = {
  400: "The monitor could not use this browser's offer",
  401: "Wrong or missing WHIP token",
  404: "This monitor has no WHIP stream with this id",
  413: "The offer is too large",
  415: "The request was not SDP",
  503: "The monitor has as many publishers as it takes; try again later",
};

async function start(event) {
  if (event) event.preventDefault();
  if (pc) return;
  $("start").disabled = true;
  say("Starting…");
  try {
    if ($("source").value === "display") {
      media = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
    } else {
      const id = $("camera").value;
      media = await navigator.mediaDevices.getUserMedia({ video: id ? { deviceId: { exact: id } } : true, audio: false });
    }
    const track = media.getVideoTracks()[0];
    track.addEventListener("ended", () => stop("The shared tab, window or camera stopped."));
    $("preview").srcObject = media;
    pc = new RTCPeerConnection({ iceServers: [] });
    pc.addEventListener("connectionstatechange", () => {
      $("state").textContent = pc ? pc.connectionState : "idle";
      if (pc && pc.connectionState === "failed") stop("The connection to the monitor failed.", true);
    });
    const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [media] });
    const codec = $("codec").value;
    if (codec) {
      const wanted = RTCRtpSender.getCapabilities("video").codecs.filter((c) => c.mimeType === `video/${codec}`);
      if (!wanted.length) throw new Error(`This browser cannot send ${codec}`);
      transceiver.setCodecPreferences(wanted);
    }
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc, 3000);
    const endpoint = $("endpoint").value;
    const response = await fetch(endpoint, {
      method: "POST", headers: headers({ "Content-Type": "application/sdp" }), body: pc.localDescription.sdp,
    });
    const answer = await response.text();
    if (response.status !== 201) {
      throw new Error(`${WHY[response.status] || "The monitor refused"} (HTTP ${response.status}): ${answer.trim()}`);
    }
    session = new URL(response.headers.get("Location"), endpoint).href;
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    remember(true);
    $("stop").disabled = false;
    say(`Publishing to ${streamId}.`);
    timer = setInterval(refresh, 1000);
  } catch (e) {
    await stop(e.message || String(e), true);
  }
}

async function refresh() {
  if (!pc) return;
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") $("frames").textContent = s.framesSent ?? 0;
  });
  try {
    const r = await fetch($("endpoint").value, { headers: headers() });
    if (!r.ok) return;
    const status = await r.json();
    $("verdict").textContent = (status.verdict || "–").replace("_", " ");
    $("verdict").className = `verdict ${status.verdict || ""}`;
    $("score").textContent = status.score == null ? "–" : Number(status.score).toFixed(3);
  } catch (e) { /* the next refresh tries again */ }
}

async function stop(text = "Stopped.", error = false) {
  clearInterval(timer);
  const ending = session;
  session = null;
  if (ending) {
    try { await fetch(ending, { method: "DELETE", headers: headers() }); } catch (e) { /* it times out anyway */ }
  }
  if (pc) pc.close();
  pc = null;
  if (media) media.getTracks().forEach((t) => t.stop());
  media = null;
  $("preview").srcObject = null;
  $("state").textContent = "idle";
  $("stop").disabled = true;
  $("start").disabled = !!problem;
  remember(false);
  say(text, error);
}

$("form").addEventListener("submit", start);
$("stop").addEventListener("click", () => stop());
$("remember").addEventListener("change", () => remember(!!pc));
// After a reload: a camera publisher starts again by itself (a new session replaces the old one); sharing a
// tab or screen needs a click, as browsers require.
if (!problem && saved.publishing && saved.source === "camera") start();
else if (!problem && saved.publishing) say("Press Start to share again.");
