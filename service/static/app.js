// FrameGraph's page: one tile per stream (its live view, state, fps, latency), a form to
// add a stream, a button to remove one, and the per-stage table; refreshed every second.
"use strict";

const tiles = document.getElementById("tiles");
const message = document.getElementById("message");
const tokenField = document.getElementById("token");
const fmt = (value, digits = 0) => (value === null || value === undefined ? "-" : value.toFixed(digits));

function tile(stream) {
  let element = document.getElementById(`tile-${stream.name}`);
  if (!element) {
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
    element.append(view, info);
    tiles.append(element);
    // on a cluster (rows name a node) the frames are on the workers: MJPEG straight away
    if (stream.node) mjpeg(stream.name, view);
    else watch(stream.name, view, element);
  }
  const state = element.querySelector(".state");
  state.textContent = stream.state;
  state.className = `state state-${stream.state}`;
  element.querySelector(".rate").textContent =
    `${fmt(stream.fps, 1)} fps, ${fmt(stream.e2e_p50_ms)} / ${fmt(stream.e2e_p95_ms)} ms`;
  element.querySelector(".node").textContent =
    stream.node ? `on ${stream.node}${stream.address ? ` (${stream.address})` : ""}` : "";
  return element;
}

// WebRTC, WHEP-style: our offer goes to the server, its answer comes back; if no frame
// arrives within a few seconds (or the server refuses, e.g. 501 on a cluster), the tile
// shows the MJPEG view instead.
const forceMjpeg = new URLSearchParams(location.search).get("view") === "mjpeg";

async function watch(name, video, element) {
  if (forceMjpeg) return mjpeg(name, video);
  const connection = new RTCPeerConnection();
  element.connection = connection;
  connection.addTransceiver("video", { direction: "recvonly" });
  connection.ontrack = (event) => { video.srcObject = event.streams[0] || new MediaStream([event.track]); };
  try {
    await connection.setLocalDescription(await connection.createOffer());
    await new Promise((resolve) => {
      if (connection.iceGatheringState === "complete") return resolve();
      connection.addEventListener("icegatheringstatechange", () => {
        if (connection.iceGatheringState === "complete") resolve();
      });
      setTimeout(resolve, 2000);
    });
    const response = await fetch(`/webrtc/${encodeURIComponent(name)}`, {
      method: "POST", headers: { "Content-Type": "application/sdp" },
      body: connection.localDescription.sdp,
    });
    if (!response.ok) throw new Error(`answer: ${response.status}`);
    await connection.setRemoteDescription({ type: "answer", sdp: await response.text() });
  } catch (error) {
    console.warn("WebRTC failed, MJPEG instead:", error);
    connection.close();
    if (element.isConnected) mjpeg(name, video);
    return;  // no point waiting for frames that cannot come
  }
  setTimeout(() => {
    if (video.videoWidth > 0 || !element.isConnected) return;
    connection.close();
    mjpeg(name, video);
  }, 6000);
}

// The fallback (and ?view=mjpeg): the stream as JPEGs over one HTTP response.
function mjpeg(name, video) {
  const image = document.createElement("img");
  image.className = "view";
  image.alt = name;
  image.src = `/live/${encodeURIComponent(name)}.mjpg`;
  video.replaceWith(image);
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
    const stages = await (await fetch("/api/stages")).json();
    // on a cluster the stages come per worker ({worker: {node, stages}}): one row each
    const flat = Object.entries(stages).flatMap(([name, s]) => (s.stages
      ? Object.entries(s.stages).map(([stage, one]) => [`${name}/${stage}`, one])
      : [[name, s]]));
    const rows = flat.map(([name, s]) => {
      const queue = s.queue ? `${s.queue.max_depth}/${s.queue.capacity}` : "-";
      const drops = s.queue ? s.queue.drops : 0;
      return `<tr><td>${name}</td><td>${s.kind}</td><td>${s.frames}</td><td>${fmt(s.fps, 1)}</td>` +
        `<td>${fmt(s.p50_ms, 1)}</td><td>${fmt(s.p95_ms, 1)}</td><td>${queue}</td><td>${drops}</td>` +
        `<td>${s.errors}</td></tr>`;
    });
    document.querySelector("#stages tbody").innerHTML = rows.join("");
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
