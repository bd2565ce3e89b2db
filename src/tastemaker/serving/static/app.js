// tastemaker web page: plain JavaScript against the service's own /v1 API; no build step.
"use strict";

const state = {
  liked: new Map(), // item id -> name
  suggestions: [],
  suggestionsFor: null, // the text the shown suggestions answer
  active: -1,
  searchSeq: 0,
};

const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

const listenersText = (n) => `${n.toLocaleString()} listener${n === 1 ? "" : "s"}`;

// -- search as you type --------------------------------------------------------------------
let searchTimer = null;

function onSearchInput() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runSearch, 120);
}

// The service ranks (tastemaker.data.names): the page shows its order and never re-sorts.
const searchUrl = (text) => `/v1/items?search=${encodeURIComponent(text)}&n=8`;

async function runSearch() {
  clearTimeout(searchTimer);
  const text = $("search").value.trim();
  const seq = ++state.searchSeq;
  if (!text) {
    hideSuggestions();
    return;
  }
  try {
    const data = await api(searchUrl(text));
    if (seq !== state.searchSeq) return; // a newer keystroke already answered
    state.suggestions = data.items;
    state.suggestionsFor = text;
    state.active = data.items.length ? 0 : -1;
    renderSuggestions();
  } catch (error) {
    showStatus(`Search failed: ${error.message}`, true);
  }
}

// Enter before the suggestions for the typed text have arrived (typing fast, then Enter):
// search now and add the first hit, so Enter always means "the first hit for what I typed".
async function addFirstHit(text) {
  clearTimeout(searchTimer);
  const seq = ++state.searchSeq; // answers to earlier keystrokes are now stale
  try {
    const data = await api(searchUrl(text));
    if (seq !== state.searchSeq || $("search").value.trim() !== text) return; // typed on
    if (data.items.length) {
      addLiked(data.items[0]);
    } else {
      state.suggestions = [];
      state.suggestionsFor = text;
      renderSuggestions(); // "No artist found"
    }
  } catch (error) {
    showStatus(`Search failed: ${error.message}`, true);
  }
}

function renderSuggestions() {
  const list = $("suggestions");
  list.replaceChildren();
  if (!state.suggestions.length) {
    list.append(el("li", { class: "none" }, "No artist found"));
  }
  state.suggestions.forEach((item, i) => {
    const liked = state.liked.has(item.item);
    list.append(
      el(
        "li",
        {
          role: "option",
          class: (i === state.active ? "active " : "") + (liked ? "liked" : ""),
          "data-item": item.item,
          onmousedown: (event) => {
            event.preventDefault(); // keep focus in the search box
            addLiked(item);
          },
        },
        el("span", { class: "name" }, item.name),
        el("span", { class: "meta" }, liked ? "added" : listenersText(item.listeners)),
      ),
    );
  });
  list.hidden = false;
}

function hideSuggestions() {
  state.suggestions = [];
  state.suggestionsFor = null;
  state.active = -1;
  $("suggestions").hidden = true;
}

function onSearchKey(event) {
  const n = state.suggestions.length;
  if (event.key === "ArrowDown" && n) {
    state.active = (state.active + 1) % n;
    renderSuggestions();
    event.preventDefault();
  } else if (event.key === "ArrowUp" && n) {
    state.active = (state.active - 1 + n) % n;
    renderSuggestions();
    event.preventDefault();
  } else if (event.key === "Enter") {
    event.preventDefault();
    const text = $("search").value.trim();
    if (!text) return;
    if (state.suggestionsFor === text && state.active >= 0) {
      addLiked(state.suggestions[state.active]); // the highlighted one (first unless moved)
    } else {
      addFirstHit(text);
    }
  } else if (event.key === "Escape") {
    hideSuggestions();
  }
}

// -- the list of liked artists -------------------------------------------------------------
function addLiked(item) {
  state.liked.set(item.item, item.name);
  $("search").value = "";
  hideSuggestions();
  renderLiked();
  recommend();
}

function removeLiked(id) {
  state.liked.delete(id);
  renderLiked();
  if (state.liked.size) recommend();
  else clearResults();
}

function renderLiked() {
  const list = $("my-artists");
  list.replaceChildren();
  for (const [id, name] of state.liked) {
    list.append(
      el(
        "li",
        { "data-item": id },
        el("button", { class: "chip-name", type: "button", title: "Explore", onclick: () => explore(id, name) }, name),
        el("button", { class: "remove", type: "button", title: `Remove ${name}`, "aria-label": `Remove ${name}`, onclick: () => removeLiked(id) }, "×"),
      ),
    );
  }
  const empty = state.liked.size === 0;
  $("empty-hint").hidden = !empty;
  $("recommend").disabled = empty;
  $("clear").disabled = empty;
}

// -- recommendations and exploring ---------------------------------------------------------
function showStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
  status.hidden = !text;
}

function clearResults() {
  $("recommendations").replaceChildren();
  showStatus("Your recommendations appear here.");
}

function resultItem(item, rank, { reason = true } = {}) {
  return el(
    "li",
    { "data-item": item.item },
    el("span", { class: "rank" }, rank),
    el(
      "div",
      { class: "body" },
      el("button", { class: "artist", type: "button", onclick: () => explore(item.item, item.name) }, item.name),
      reason && item.reason ? el("span", { class: "reason" }, item.reason) : null,
      tagChips(item.tags),
    ),
    el("span", { class: "meta" }, listenersText(item.listeners)),
    state.liked.has(item.item)
      ? el("span", { class: "add done" }, "✓")
      : el("button", { class: "add", type: "button", title: `Add ${item.name} to the artists you like`, onclick: () => addLiked(item) }, "+"),
  );
}

// The item's top tags as small buttons; a click starts from that tag (tags.js listens).
// The tag box shows once any card has tags (untagged data: the tag routes answer 404).
function tagChips(tags) {
  if (!tags || !tags.length) return null;
  $("tag-box").hidden = false;
  return el(
    "span",
    { class: "tags" },
    ...tags.map((tag) =>
      el("button", { class: "tag", type: "button", "data-tag": tag, title: `Artists tagged ${tag}`, onclick: () => startFromTag(tag) }, tag),
    ),
  );
}

function startFromTag(tag) {
  document.dispatchEvent(new CustomEvent("tastemaker:tag", { detail: { tag } }));
}

let recommendSeq = 0;

async function recommend() {
  if (!state.liked.size) return;
  const seq = ++recommendSeq;
  showStatus("Finding artists…");
  const history = [...state.liked.keys()].map((item) => ({ item, count: 1 }));
  try {
    const data = await api("/v1/recommendations?n=12", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ history }),
    });
    if (seq !== recommendSeq) return;
    const list = $("recommendations");
    list.replaceChildren(...data.items.map((item, i) => resultItem(item, i + 1)));
    showStatus(data.items.length ? "" : "No recommendations for these artists.");
  } catch (error) {
    showStatus(`Could not recommend: ${error.message}`, true);
  }
}

async function explore(id, name) {
  const panel = $("explore-panel");
  panel.hidden = false;
  $("explore-title").textContent = `Artists similar to ${name}`;
  $("explore-hint").textContent = "Loading…";
  try {
    const data = await api(`/v1/items/${encodeURIComponent(id)}/similar?n=12`);
    $("explore-hint").textContent = `${listenersText(data.item.listeners)}. Click an artist to explore it, + to add it.`;
    $("similar").replaceChildren(...data.items.map((item, i) => resultItem(item, i + 1, { reason: false })));
    panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
  } catch (error) {
    $("explore-hint").textContent = `Could not load similar artists: ${error.message}`;
    $("similar").replaceChildren();
  }
}

async function showPopular() {
  try {
    const data = await api("/v1/items?n=12");
    $("explore-panel").hidden = false;
    $("explore-title").textContent = "Popular artists";
    $("explore-hint").textContent = "Click an artist to explore it, + to add it.";
    $("similar").replaceChildren(...data.items.map((item, i) => resultItem(item, i + 1, { reason: false })));
  } catch (_) {
    // The page works without it.
  }
}

async function loadModelInfo() {
  try {
    const health = await api("/healthz");
    const m = health.model;
    const retrieval = m.retrieval.kind === "exact"
      ? "exact retrieval"
      : `ANN retrieval (recall@10 ${m.retrieval.recall_at_10?.toFixed(3)})`;
    $("model-info").textContent = `${m.model} model · ${m.items.toLocaleString()} artists · ${m.users.toLocaleString()} listeners · ${retrieval}`;
  } catch (_) {
    $("model-info").textContent = "";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("input", onSearchInput);
  $("search").addEventListener("keydown", onSearchKey);
  $("search").addEventListener("blur", () => setTimeout(hideSuggestions, 150));
  $("recommend").addEventListener("click", recommend);
  $("clear").addEventListener("click", () => {
    state.liked.clear();
    renderLiked();
    clearResults();
  });
  renderLiked();
  loadModelInfo();
  showPopular();
});
