// Start from a tag: a tag box with as-you-type suggestions (GET /v1/tags?q=), and the artists
// most strongly tagged so (GET /v1/tags/{tag}/items) in the explore panel, as artist cards.
// Uses app.js's helpers and state (api, el, resultItem, state, renderLiked, recommend); a tag chip on any card sends
// "tastemaker:tag". The playlist box gets the tag, so "From this tag" (playlist.js) follows.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const tags = { suggestions: [], suggestionsFor: null, active: -1, seq: 0, startSeq: 0 };
  let timer = null;
  const suggestUrl = (text) => `/v1/tags?q=${encodeURIComponent(text)}&n=8`;
  const SEED_ARTISTS = 5;
  const artistsText = (n) => `${n.toLocaleString()} artist${n === 1 ? "" : "s"}`;

  async function suggest() {
    clearTimeout(timer);
    const text = $("tag-search").value.trim();
    const seq = ++tags.seq;
    if (!text) {
      hide();
      return;
    }
    try {
      const data = await api(suggestUrl(text));
      if (seq !== tags.seq) return; // a newer keystroke already answered
      tags.suggestions = data.tags;
      tags.suggestionsFor = text;
      tags.active = data.tags.length ? 0 : -1;
      render();
    } catch (error) {
      hide();
      $("explore-hint").textContent = `Tag search failed: ${error.message}`;
    }
  }

  function render() {
    const list = $("tag-suggestions");
    list.replaceChildren();
    if (!tags.suggestions.length) list.append(el("li", { class: "none" }, "No tag found"));
    tags.suggestions.forEach((hit, i) => {
      list.append(
        el(
          "li",
          {
            role: "option",
            class: i === tags.active ? "active" : "",
            "data-tag": hit.tag,
            onmousedown: (event) => {
              event.preventDefault(); // keep focus in the box
              start(hit.tag);
            },
          },
          el("span", { class: "name" }, hit.tag),
          el("span", { class: "meta" }, artistsText(hit.items)),
        ),
      );
    });
    list.hidden = false;
  }

  function hide() {
    tags.suggestions = [];
    tags.suggestionsFor = null;
    tags.active = -1;
    $("tag-suggestions").hidden = true;
  }

  function onKey(event) {
    const n = tags.suggestions.length;
    if ((event.key === "ArrowDown" || event.key === "ArrowUp") && n) {
      tags.active = (tags.active + (event.key === "ArrowDown" ? 1 : n - 1)) % n;
      render();
      event.preventDefault();
    } else if (event.key === "Enter") {
      event.preventDefault();
      const text = $("tag-search").value.trim();
      if (!text) return;
      // The highlighted suggestion when it answers what is typed; else the text as a tag
      // (the service folds case and punctuation, and says "did you mean" if it knows none).
      const picked = tags.suggestionsFor === text && tags.active >= 0;
      start(picked ? tags.suggestions[tags.active].tag : text);
    } else if (event.key === "Escape") {
      hide();
    }
  }

  function useAsList(items) {
    for (const item of items) state.liked.set(item.item, item.name);
    renderLiked();
    recommend();
  }

  // The artists of a tag in the explore panel, as cards (their own tag chips included).
  async function start(tag) {
    const seq = ++tags.startSeq;
    hide();
    $("tag-search").value = tag;
    $("playlist-seed").value = tag;
    const panel = $("explore-panel");
    panel.hidden = false;
    $("explore-title").textContent = `Artists tagged ${tag}`;
    $("explore-hint").textContent = "Loading…";
    try {
      const data = await api(`/v1/tags/${encodeURIComponent(tag)}/items?n=12`);
      if (seq !== tags.startSeq) return; // another tag was picked meanwhile
      const name = data.tag.tag;
      $("explore-title").textContent = `Artists tagged ${name}`;
      $("explore-hint").textContent =
        `${artistsText(data.tag.items)} tagged ${name}, the most strongly tagged first. ` +
        "Click an artist to explore it, + to add it, a tag to start from it. ";
      // Starting from a tag as from artists: its top artists become the list to recommend
      // from (the button goes with the hint when the panel shows something else).
      const top = data.items.slice(0, SEED_ARTISTS);
      if (top.length) {
        $("explore-hint").append(
          el("button", { id: "tag-to-list", class: "secondary", type: "button", onclick: () => useAsList(top) },
            `Recommend from the top ${top.length}`),
        );
      }
      $("similar").replaceChildren(
        ...data.items.map((item, i) => resultItem(item, i + 1, { reason: false })),
      );
      panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
    } catch (error) {
      if (seq !== tags.startSeq) return;
      $("explore-hint").textContent = `Could not start from ${tag}: ${error.message}`;
      $("similar").replaceChildren();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("tag-search").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(suggest, 120);
    });
    $("tag-search").addEventListener("keydown", onKey);
    $("tag-search").addEventListener("blur", () => setTimeout(hide, 150));
  });
  document.addEventListener("tastemaker:tag", (event) => start(event.detail.tag));
  window.tastemakerTags = { start };
})();
