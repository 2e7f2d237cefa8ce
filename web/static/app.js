// crossmodal web UI: one page, no build step. Talks to the JSON API under /api.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { image: null, audio: null, lastQuery: null, lastBody: null, lastSummary: null, recorder: null,
  feedback: {}, user: null, view: "search", similarOf: null };
const KINDS = [["image", "Images"], ["audio", "Sounds"], ["text", "Texts"]];
const MAX_RECORD_SECONDS = 30;
// A search node (`crossmodal serve --replica`) keeps no users: no likes, no "for you", no "more like this".
const SEARCH_NODE = document.body.dataset.searchNode === "true";

function say(text) { $("message").textContent = text || ""; }

function setImage(file) {
  if (file && !file.type.startsWith("image/") && file.type !== "") {
    say(`That file is ${file.type || "not an image"}; choose an image.`);
    return;
  }
  state.image = file;
  const preview = $("image-preview");
  preview.replaceChildren();
  if (file) {
    const img = document.createElement("img");
    img.alt = "query image";
    img.src = URL.createObjectURL(file);
    preview.append(img);
  } else {
    $("image").value = "";
  }
  $("image-clear").hidden = !file;
}

function setAudio(blob, label) {
  state.audio = blob;
  const preview = $("audio-preview");
  preview.replaceChildren();
  if (blob) {
    const player = document.createElement("audio");
    player.controls = true;
    player.src = URL.createObjectURL(blob);
    player.setAttribute("aria-label", label || "query audio");
    preview.append(player);
  } else {
    $("audio").value = "";
  }
  $("audio-clear").hidden = !blob;
}

// Browsers record compressed WebM/Opus, which the server's decoders do not read: decode it
// here with the Web Audio API and send 16-bit mono WAV instead.
function encodeWav(buffer) {
  const rate = buffer.sampleRate;
  const frames = buffer.length;
  const mono = new Float32Array(frames);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < frames; i++) mono[i] += data[i] / buffer.numberOfChannels;
  }
  const out = new DataView(new ArrayBuffer(44 + frames * 2));
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) out.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); out.setUint32(4, 36 + frames * 2, true); text(8, "WAVE");
  text(12, "fmt "); out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, rate, true); out.setUint32(28, rate * 2, true); out.setUint16(32, 2, true);
  out.setUint16(34, 16, true); text(36, "data"); out.setUint32(40, frames * 2, true);
  for (let i = 0; i < frames; i++) {
    const v = Math.max(-1, Math.min(1, mono[i]));
    out.setInt16(44 + i * 2, v < 0 ? v * 0x8000 : v * 0x7fff, true);
  }
  return new Blob([out.buffer], { type: "audio/wav" });
}

async function toggleRecording() {
  const button = $("record");
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    say("This browser cannot record audio; upload a file instead.");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    say(`Microphone unavailable: ${err.message}`);
    return;
  }
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  state.recorder = recorder;
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = async () => {
    clearTimeout(state.recordTimer);
    stream.getTracks().forEach((t) => t.stop());
    state.recorder = null;
    button.textContent = "Record";
    button.setAttribute("aria-pressed", "false");
    $("record-status").textContent = "Processing recording…";
    try {
      const ctx = new AudioContext();
      const decoded = await ctx.decodeAudioData(await new Blob(chunks).arrayBuffer());
      ctx.close();
      setAudio(encodeWav(decoded), "recorded audio");
      $("record-status").textContent = `Recorded ${decoded.duration.toFixed(1)} s.`;
    } catch (err) {
      $("record-status").textContent = "";
      say(`Could not read the recording: ${err.message}`);
    }
  };
  recorder.start();
  state.recordTimer = setTimeout(() => recorder.state === "recording" && recorder.stop(), MAX_RECORD_SECONDS * 1000);
  button.textContent = "Stop";
  button.setAttribute("aria-pressed", "true");
  $("record-status").textContent = "Recording… press Stop when done.";
}

function buildQuery() {
  const form = new FormData();
  const text = $("text").value.trim();
  if (text) form.append("text", text);
  if (state.image) form.append("image", state.image, state.image.name || "image");
  if (state.audio) form.append("audio", state.audio, state.audio.name || "audio.wav");
  if (!text && !state.image && !state.audio) return null;
  const targets = [...document.querySelectorAll("input[name=target]:checked")].map((c) => c.value);
  form.append("targets", targets.join(","));
  form.append("k", $("k").value || "12");
  if ($("explain").checked) form.append("explain", "true");
  return form;
}

async function runSearch(form) {
  say("");
  $("summary").textContent = "Searching…";
  $("search").disabled = true;
  try {
    const response = await fetch("/api/search", { method: "POST", body: form });
    const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) {
      $("summary").textContent = "";
      say(body.error || `Search failed (HTTP ${response.status}).`);
      return;
    }
    state.lastBody = body;
    state.lastSummary = null;
    state.view = "search";
    setTitle(null);
    render(body);
  } catch (err) {
    $("summary").textContent = "";
    say(`Cannot reach the server: ${err.message}`);
  } finally {
    $("search").disabled = false;
  }
}

function basename(uri) { return uri.split(/[\\/]/).pop(); }

// When even the best match is weak by calibrated relevance, say so plainly, with what the
// loaded model knows (the page shows it under #about).
function showNotice(body) {
  const notice = $("notice");
  notice.hidden = !body.weak;
  if (!body.weak) { notice.textContent = ""; return; }
  const text = body.notice.charAt(0).toUpperCase() + body.notice.slice(1);
  const best = body.best_relevance == null ? "" : ` (best relevance ${body.best_relevance.toFixed(2)})`;
  const knows = $("description") ? ` The model ${$("model").textContent} knows: ${$("description").textContent}` : "";
  notice.textContent = `${text}${best}.${knows}`;
}

function render(body, summary) {
  const results = body.results;
  const list = $("results");
  const groups = $("groups");
  list.replaceChildren();
  groups.replaceChildren();
  $("about").hidden = true;
  showNotice(body);
  if (!results.length) {
    $("summary").textContent = "No results. Try other words, or include more target kinds.";
    return;
  }
  $("summary").textContent = summary || `${results.length} result${results.length === 1 ? "" : "s"}.`;
  const grouped = $("group").checked;
  list.hidden = grouped;
  groups.hidden = !grouped;
  if (!grouped) {
    for (const r of results) list.append(resultCard(r));
    return;
  }
  for (const [kind, title] of KINDS) {
    const mine = results.filter((r) => r.modality === kind);
    if (!mine.length) continue;
    const section = document.createElement("section");
    section.className = "group";
    section.dataset.modality = kind;
    const heading = document.createElement("h2");
    heading.textContent = `${title} (${mine.length})`;
    const ol = document.createElement("ol");
    ol.className = "results";
    for (const r of mine) ol.append(resultCard(r));
    section.append(heading, ol);
    groups.append(section);
  }
}

// Near-duplicates the server grouped with a result (the same content in other files): a
// "+N copies" line that opens to their paths.
function copiesList(copies) {
  const d = document.createElement("details");
  d.className = "copies";
  const s = document.createElement("summary");
  s.textContent = `+${copies.length} ${copies.length === 1 ? "copy" : "copies"}`;
  d.append(s);
  for (const c of copies) {  // not list items: "#results li" means result cards
    const path = document.createElement("div");
    path.className = "copy";
    path.textContent = c.uri.includes("#L") ? `#${c.id} (text)` : c.uri;
    path.title = `item ${c.id}`;
    d.append(path);
  }
  return d;
}

function resultCard(r) {
  const li = document.createElement("li");
  li.className = "result";
  li.dataset.id = r.id;
  li.dataset.label = r.label ?? "";
  li.dataset.modality = r.modality;
  const title = r.label ? `${r.modality}, label ${r.label}` : r.modality;
  if (r.modality === "image") {
    const img = document.createElement("img");
    img.src = `/api/items/${r.id}/thumbnail?size=128`;
    img.alt = `image result: ${title}`;
    img.loading = "lazy";
    li.append(img);
  } else if (r.modality === "audio") {
    const player = document.createElement("audio");
    player.controls = true;
    player.preload = "none";
    const span = r.start != null ? `#t=${r.start.toFixed(2)},${r.end.toFixed(2)}` : "";
    player.src = `/api/items/${r.id}/media${span}`;
    player.setAttribute("aria-label", `audio result: ${title}`);
    li.append(player);
  }
  if (r.text) {
    const p = document.createElement("p");
    p.className = "snippet";
    p.dir = "auto"; // Unicode: right-to-left text runs right to left; cut between characters, not UTF-16 units
    const chars = Array.from(r.text);
    p.textContent = chars.length > 200 ? chars.slice(0, 197).join("") + "…" : r.text;
    li.append(p);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  const span = r.start != null ? ` · ${r.start.toFixed(1)}–${r.end.toFixed(1)} s` : "";
  meta.innerHTML = "";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = r.score.toFixed(3);
  score.title = r.relevance == null ? "raw score (this collection cannot calibrate it)"
    : "calibrated relevance: comparable between images, sounds and texts";
  const cosine = r.cosine == null ? "" : ` · cos ${r.cosine.toFixed(3)}`;
  meta.append(score, `${cosine} · ${title}${span} · ${r.uri.includes("#L") ? "text" : basename(r.uri)}`);
  li.append(meta);
  if (r.copies && r.copies.length) li.append(copiesList(r.copies));
  const actions = document.createElement("div");
  actions.className = "actions";
  for (const [event, label] of SEARCH_NODE ? [] : [["like", "Like"], ["dislike", "Dislike"]]) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = event;
    b.textContent = label;
    b.setAttribute("aria-label", `${label} result ${r.id} (${title})`);
    b.setAttribute("aria-pressed", String(state.feedback[r.id] === event));
    b.addEventListener("click", () => sendFeedback(r.id, event));
    actions.append(b);
  }
  const more = document.createElement("button");
  more.type = "button";
  more.className = "more";
  more.textContent = "More like this";
  more.setAttribute("aria-label", `More like result ${r.id} (${title})`);
  more.addEventListener("click", () => showSimilar(r.id, title));
  if (!SEARCH_NODE) actions.append(more);
  if (actions.childElementCount) li.append(actions);
  if (Array.isArray(r.explanation)) {
    li.append(whyList(r.explanation));
  } else if (r.explanation) {
    const d = document.createElement("details");
    const s = document.createElement("summary");
    s.textContent = "Why this score";
    const pre = document.createElement("pre");
    const e = r.explanation;
    const parts = e.parts.map((p) => `${p.modality} ${p.query} ×${p.weight}: cos ${p.cosine.toFixed(3)}`
      + (p.z == null ? "" : `, z ${p.z.toFixed(2)}`)).join("\n");
    const personal = e.personal == null ? "" : `\npersonal ${e.personal.toFixed(3)} (β ${e.beta})`;
    const relevance = e.relevance == null ? "uncalibrated" : `relevance ${e.relevance.toFixed(3)}`;
    pre.textContent = `${parts}\n${e.index} index: cosine ${e.cosine.toFixed(3)}, ${relevance}${personal}`
      + `\nfinal ${e.final.toFixed(3)}`;
    d.append(s, pre);
    li.append(d);
  }
  return li;
}

// Why a recommendation is on the list, naming the liked items behind it: the first reason shows
// on hover, all of them when the line is opened.
function whyList(reasons) {
  const d = document.createElement("details");
  d.className = "why";
  const s = document.createElement("summary");
  s.textContent = reasons.length ? `Why: ${reasons[0].text}` : "Why";
  s.title = reasons.map((x) => x.text).join("\n");
  d.append(s);
  for (const reason of reasons) {  // not list items: "#results li" means result cards
    const line = document.createElement("div");
    line.className = `reason ${reason.kind}`;
    if (reason.item != null) line.dataset.item = reason.item;
    line.textContent = reason.text;
    d.append(line);
  }
  return d;
}

function setTitle(text) {
  $("view-title").textContent = text || "";
  $("view-title").hidden = !text;
}

function chosenTargets() {
  return [...document.querySelectorAll("input[name=target]:checked")].map((c) => c.value);
}

async function getJson(url, busy) {
  say("");
  $("summary").textContent = busy;
  try {
    const response = await fetch(url);
    const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (response.ok) return body;
    $("summary").textContent = "";
    say(body.error || `Request failed (HTTP ${response.status}).`);
  } catch (err) {
    $("summary").textContent = "";
    say(`Cannot reach the server: ${err.message}`);
  }
  return null;
}

const HOW = {
  hybrid: "what you liked and what people with similar likes liked",
  content: "what you liked",
  collaborative: "what people with similar likes liked",
  popular: "what many people liked",
};

// "For you": a list for this browser's own user with no query. A user with no likes yet gets
// popular, varied items, and the page says so.
async function showForYou() {
  const params = new URLSearchParams({ k: $("k").value || "12", explain: "true" });
  const targets = chosenTargets();
  if (targets.length) params.set("targets", targets.join(","));
  const body = await getJson(`/api/recommend?${params}`, "Finding items for you…");
  if (!body) return;
  state.view = "foryou";
  const n = body.results.length;
  const summary = body.history === 0
    ? "You have not liked anything yet, so these are popular and varied items. Like some to make this list yours."
    : `${n} item${n === 1 ? "" : "s"} for you, from ${HOW[body.used] || body.used} `
      + `(${body.history} liked item${body.history === 1 ? "" : "s"}).`;
  state.lastBody = body;
  state.lastSummary = summary;
  setTitle("For you");
  render(body, summary);
}

// "More like this": the items of every chosen kind nearest to one item.
async function showSimilar(id, title) {
  const params = new URLSearchParams({ k: $("k").value || "12" });
  const targets = chosenTargets();
  if (targets.length) params.set("targets", targets.join(","));
  const body = await getJson(`/api/items/${id}/similar?${params}`, "Finding similar items…");
  if (!body) return;
  state.view = "similar";
  state.similarOf = id;
  const n = body.results.length;
  const summary = `${n} item${n === 1 ? "" : "s"} like #${id} (${title}).`;
  state.lastBody = body;
  state.lastSummary = summary;
  setTitle(`More like #${id}`);
  $("results").dataset.similarTo = id;
  render(body, summary);
}

// After a like or a forget, show the current view again: a search runs again, "for you" is
// asked again, a "more like this" list only shows the new button states.
async function refresh() {
  if (state.view === "foryou") return showForYou();
  if (state.view === "similar" && state.lastBody) return render(state.lastBody, state.lastSummary);
  if (state.lastQuery) {
    const form = buildQuery();
    if (form) return runSearch(form);
  }
}

// The server knows who this browser is (a signed cookie it set): searches and likes are this
// user's without naming anyone.
async function whoAmI() {
  const response = await fetch("/api/me");
  if (!response.ok) return;
  state.user = (await response.json()).user;
  $("user").textContent = state.user;
}

async function forgetMe() {
  if (!state.user) return;
  const response = await fetch(`/api/users/${encodeURIComponent(state.user)}/feedback`, { method: "DELETE" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    say(body.error || `Could not forget your likes (HTTP ${response.status}).`);
    return;
  }
  state.feedback = {};
  await refresh();
  say(`Forgot ${body.deleted} like(s) and dislike(s).`);
}

async function sendFeedback(item, event) {
  const response = await fetch("/api/feedback", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ item, event }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    say(body.error || `Feedback failed (HTTP ${response.status}).`);
    return;
  }
  state.feedback[item] = event;
  refresh();
}

function init() {
  if (!SEARCH_NODE) {
    whoAmI();
    $("forget").addEventListener("click", forgetMe);
    $("for-you").addEventListener("click", showForYou);
  }
  $("image").addEventListener("change", (e) => setImage(e.target.files[0] || null));
  $("audio").addEventListener("change", (e) => setAudio(e.target.files[0] || null, "query audio"));
  $("image-clear").addEventListener("click", () => setImage(null));
  $("audio-clear").addEventListener("click", () => setAudio(null));
  $("record").addEventListener("click", toggleRecording);
  $("group").addEventListener("change", () => { if (state.lastBody) render(state.lastBody, state.lastSummary); });
  const drop = $("image-drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = [...e.dataTransfer.files].find((f) => f.type.startsWith("image/"));
    if (file) setImage(file); else say("Drop an image file here.");
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("image").click(); }
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { setImage(file); say(""); }
  });
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = buildQuery();
    if (!form) {
      say("Type some text, add an image or add an audio clip first.");
      return;
    }
    if (![...document.querySelectorAll("input[name=target]:checked")].length) {
      say("Choose at least one kind of result to find.");
      return;
    }
    state.lastQuery = true;
    runSearch(form);
  });
}

document.addEventListener("DOMContentLoaded", init);
