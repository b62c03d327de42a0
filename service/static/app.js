// FrameGraph's page: one tile per stream (its live view, state, fps, latency, RTSP URL, the
// counts of its zones and lines), a form to add a stream, a button to remove one, the recent
// events and the per-stage table; refreshed every second.
"use strict";

const tiles = document.getElementById("tiles");
const message = document.getElementById("message");
const tokenField = document.getElementById("token");
const fmt = (value, digits = 0) => (value === null || value === undefined ? "-" : value.toFixed(digits));

function tile(stream) {
  let element = document.getElementById(`tile-${stream.name}`);
  const fresh = !element;
  if (fresh) {
    element = document.createElement("div");
    element.className = "tile";
    element.id = `tile-${stream.name}`;
    element.dataset.name = stream.name;
    const view = document.createElement("video");
    view.className = "view";
    view.autoplay = view.muted = view.playsInline = true;
    const info = document.createElement("div");
    info.className = "info";
    info.innerHTML = '<span class="name"></span><span class="state"></span>' +
      '<span class="rate"></span><span class="node"></span><button class="remove">Remove</button>';
    info.querySelector(".name").textContent = stream.name;
    info.querySelector(".remove").addEventListener("click", () => remove(stream.name));
    const links = document.createElement("div");
    links.className = "links";
    links.innerHTML = '<a class="rtsp"></a>';
    const counts = document.createElement("div");
    counts.className = "counts";
    element.append(view, info, links, counts);
    tiles.append(element);
  }
  element.stream = stream;  // the newest row: its views, state and worker
  if (fresh) watch(element);
  else check(element);
  const state = element.querySelector(".state");
  state.textContent = stream.state;
  state.className = `state state-${stream.state}`;
  element.querySelector(".rate").textContent =
    `${fmt(stream.fps, 1)} fps, ${fmt(stream.e2e_p50_ms)} / ${fmt(stream.e2e_p95_ms)} ms`;
  element.querySelector(".node").textContent =
    stream.node ? `on ${stream.node}${stream.address ? ` (${stream.address})` : ""}` : "";
  element.querySelector(".counts").textContent = countsText(stream.counts || {});
  const rtsp = element.querySelector(".rtsp");  // its RTSP output, for a player (VLC, ffplay)
  const url = (stream.views && stream.views.rtsp) || "";
  if (rtsp.textContent !== url) {
    rtsp.textContent = url;
    if (url) rtsp.href = url;
    else rtsp.removeAttribute("href");
  }
  return element;
}

// A tile's zones and lines: "lot: 2 inside · door: 3 in, 1 out" (per class in a tooltip-free
// short form: the sums of every class).
function countsText(counts) {
  const sum = (byLabel) => Object.values(byLabel || {}).reduce((a, b) => a + b, 0);
  const zones = Object.entries(counts.occupancy || {}).map(([zone, n]) => `${zone}: ${n} inside`);
  const lines = Object.entries(counts.line_counts || {}).map(
    ([line, ways]) => `${line}: ${sum(ways.in)} in, ${sum(ways.out)} out`);
  return [...zones, ...lines].join(" · ");
}

// WebRTC, WHEP-style: our offer goes to the server, its answer comes back (on a cluster the
// API hands the offer to the camera's worker and the video comes from that worker's node).
// A connection that fails or drops (its camera moved to another worker, the server went
// away) is replaced at once; an offer refused with 503 (the camera is being placed again)
// is made again every second for a while. Any other refusal, or no frame within a few
// seconds, and the tile shows the MJPEG view instead.
const forceMjpeg = new URLSearchParams(location.search).get("view") === "mjpeg";
const RETRY_MS = 1000;  // between offers while the camera is being placed (503)
const RETRY_FOR_MS = 30000;  // then MJPEG
const FIRST_FRAME_MS = 6000;  // a connection with no frame by then: MJPEG
const DISCONNECTED_MS = 2000;  // "disconnected" for this long (it may recover): connect again
const STALL_MS = 3000;  // a live camera's connection without a new frame this long (or 4
// of its frame intervals, if longer): connect again

async function watch(element, since = Date.now()) {
  const video = element.querySelector("video.view");
  if (forceMjpeg || !video) return mjpeg(element);
  const connection = new RTCPeerConnection();
  element.connection = connection;
  element.worker = element.stream.worker;  // where the camera ran when we offered
  element.frames = { count: 0, at: Date.now() };
  connection.addTransceiver("video", { direction: "recvonly" });
  connection.ontrack = (event) => { video.srcObject = event.streams[0] || new MediaStream([event.track]); };
  let status = 0;
  try {
    await connection.setLocalDescription(await connection.createOffer());
    await gathered(connection);
    const response = await fetch(element.stream.views.webrtc, {
      method: "POST", headers: { "Content-Type": "application/sdp" },
      body: connection.localDescription.sdp,
    });
    status = response.status;
    if (!response.ok) throw new Error(`answer: ${response.status}`);
    await connection.setRemoteDescription({ type: "answer", sdp: await response.text() });
  } catch (error) {
    connection.close();
    if (element.connection !== connection || !element.isConnected) return;
    element.connection = null;
    if (status === 503 && Date.now() - since < RETRY_FOR_MS) {
      setTimeout(() => { if (element.isConnected && !element.connection) watch(element, since); }, RETRY_MS);
    } else {
      console.warn("WebRTC failed, MJPEG instead:", error);
      mjpeg(element);
    }
    return;
  }
  connection.addEventListener("connectionstatechange", () => {
    const state = connection.connectionState;
    if (state === "failed" || state === "closed") again(element, connection, state);
    if (state !== "disconnected") return;
    setTimeout(() => {
      if (connection.connectionState === "disconnected") again(element, connection, state);
    }, DISCONNECTED_MS);
  });
  // the server hanging up (its camera removed or moved away, its worker stopping) closes the
  // DTLS transport at once, while ICE would take seconds to notice
  const transport = connection.getReceivers()[0] && connection.getReceivers()[0].transport;
  if (transport) {
    transport.addEventListener("statechange", () => {
      if (transport.state === "closed" || transport.state === "failed") {
        again(element, connection, `DTLS ${transport.state}`);
      }
    });
  }
  setTimeout(async () => {
    if (element.connection !== connection || (await decoded(connection)) > 0) return;
    console.warn("no frame over WebRTC, MJPEG instead");
    connection.close();
    element.connection = null;
    if (element.isConnected) mjpeg(element);
  }, FIRST_FRAME_MS);
}

// Our ICE candidates complete (or 2 s passed): the offer then carries them all.
function gathered(connection) {
  return new Promise((resolve) => {
    if (connection.iceGatheringState === "complete") return resolve();
    connection.addEventListener("icegatheringstatechange", () => {
      if (connection.iceGatheringState === "complete") resolve();
    });
    setTimeout(resolve, 2000);
  });
}

// Frames decoded so far on a connection (0 once it is closed).
async function decoded(connection) {
  let frames = 0;
  try {
    (await connection.getStats()).forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "video") frames = report.framesDecoded || 0;
    });
  } catch (error) {  // closed meanwhile
    return 0;
  }
  return frames;
}

// A tile's connection replaced by a new one (unless it was replaced already, or the tile went).
function again(element, connection, why) {
  if (element.connection !== connection || !element.isConnected) return;
  console.info(`WebRTC ${why}: connecting again`);
  connection.close();
  element.connection = null;
  watch(element);
}

// At each refresh: a camera now running on another worker (moved: its old worker's video
// has stopped), or a live camera whose frames stopped coming, gets a new connection.
async function check(element) {
  const connection = element.connection;
  const stream = element.stream;
  if (!connection || connection.connectionState !== "connected") return;
  if (stream.state !== "live") {  // a camera reconnecting sends nothing: not a stall
    element.frames = { count: element.frames.count, at: Date.now() };
    return;
  }
  if (stream.worker !== element.worker) return again(element, connection, "moved");
  const count = await decoded(connection);
  if (count === 0) return;  // no first frame yet: watch() falls back to MJPEG if none comes
  if (count !== element.frames.count) element.frames = { count, at: Date.now() };
  else if (Date.now() - element.frames.at > Math.max(STALL_MS, stream.fps ? 4000 / stream.fps : 0)) {
    again(element, connection, "stalled");
  }
}

// The fallback (and ?view=mjpeg): the stream as JPEGs over one HTTP response.
function mjpeg(element) {
  const video = element.querySelector("video.view");
  if (!video) return;
  const image = document.createElement("img");
  image.className = "view";
  image.alt = element.stream.name;
  image.src = element.stream.views.mjpeg;
  video.replaceWith(image);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  return tr;
}

async function refresh() {
  try {
    const streams = await (await fetch("/api/streams")).json();
    const shown = new Set();
    for (const stream of streams) {
      if (stream.state === "ended") continue;  // the page shows what plays
      shown.add(tile(stream).id);
    }
    for (const element of [...tiles.children]) {
      if (shown.has(element.id)) continue;
      if (element.connection) element.connection.close();
      element.remove();
    }
    const events = await (await fetch("/api/events?limit=10")).json();
    // names come from configs and cameras: set as text, never parsed as HTML
    document.querySelector("#events tbody").replaceChildren(...events.reverse().map((e) => row([
      new Date(e.wall_time * 1000).toLocaleTimeString(), e.source,
      `${e.kind}${e.direction ? ` ${e.direction}` : ""}`, e.where, `${e.label} #${e.track_id}`,
      e.dwell_s === undefined ? "" : `${fmt(e.dwell_s, 1)} s`])));
    const stages = await (await fetch("/api/stages")).json();
    // on a cluster the stages come per worker ({worker: {node, stages}}): one row each
    const flat = Object.entries(stages).flatMap(([name, s]) => (s.stages
      ? Object.entries(s.stages).map(([stage, one]) => [`${name}/${stage}`, one])
      : [[name, s]]));
    document.querySelector("#stages tbody").replaceChildren(...flat.map(([name, s]) => row([
      name, s.kind, s.frames, fmt(s.fps, 1), fmt(s.p50_ms, 1), fmt(s.p95_ms, 1),
      s.queue ? `${s.queue.max_depth}/${s.queue.capacity}` : "-", s.queue ? s.queue.drops : 0,
      s.errors])));
  } catch (error) {
    message.textContent = `cannot reach the server: ${error}`;
  }
}

// Adding and removing need the server's token when it has one (401 without): the page then
// shows a token field, keeps what is typed there for this tab only, and sends it as a Bearer.
tokenField.value = sessionStorage.getItem("framegraph-token") || "";
tokenField.hidden = !tokenField.value;
tokenField.addEventListener("change", () => sessionStorage.setItem("framegraph-token", tokenField.value));

async function mutate(url, options) {
  const headers = { ...(options.headers || {}) };
  if (tokenField.value) headers.Authorization = `Bearer ${tokenField.value}`;
  const response = await fetch(url, { ...options, headers });
  if (response.status === 401) {
    tokenField.hidden = false;
    tokenField.focus();
    message.textContent = tokenField.value ? "wrong API token" : "this server needs its API token";
  } else {
    message.textContent = response.ok ? "" : JSON.stringify((await response.json()).detail);
  }
  return response;
}

async function remove(name) {
  await mutate(`/api/streams/${encodeURIComponent(name)}`, { method: "DELETE" });
  await refresh();
}

document.getElementById("add").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  message.textContent = "adding...";
  const response = await mutate("/api/streams", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: form.get("name"), url: form.get("url") }),
  });
  if (response.ok) {  // not reset(): that would empty the token field too
    for (const field of event.target.querySelectorAll("input[name]")) field.value = "";
  }
  await refresh();
});

refresh();
setInterval(refresh, 1000);
