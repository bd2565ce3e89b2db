// "Make a playlist": from the artists you like, from an artist or from a tag; the tracklist
// with a reason per track, and a JSPF download (ListenBrainz imports it). Self-contained: it
// reads the liked artists from the page (#my-artists li[data-item]) and calls /v1/playlists.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let lastRequest = null;
  let downloadUrl = null;

  function likedHistory() {
    return [...document.querySelectorAll("#my-artists li[data-item]")].map((li) => ({
      item: li.getAttribute("data-item"),
      count: 1,
    }));
  }

  function status(text, isError = false) {
    const node = $("playlist-status");
    node.textContent = text;
    node.classList.toggle("error", isError);
  }

  async function post(body) {
    const response = await fetch("/v1/playlists", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const answer = await response.json();
        if (typeof answer.detail === "string") detail = answer.detail;
      } catch (_) {
        /* not JSON */
      }
      throw new Error(detail || `HTTP ${response.status}`);
    }
    return response;
  }

  function trackItem(track, number) {
    const li = document.createElement("li");
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = number;
    const body = document.createElement("div");
    body.className = "body";
    const title = document.createElement("span");
    title.className = "track";
    title.textContent = track.title ? `${track.artist} – ${track.title}` : track.artist;
    const reason = document.createElement("span");
    reason.className = "reason";
    reason.textContent = track.reason;
    body.append(title, reason);
    li.append(rank, body);
    return li;
  }

  async function make(body, label) {
    status(`Making a playlist ${label}…`);
    $("playlist").replaceChildren();
    $("playlist-download").hidden = true;
    try {
      const data = await (await post(body)).json();
      lastRequest = body;
      $("playlist").replaceChildren(...data.tracks.map((t, i) => trackItem(t, i + 1)));
      const notes = [...data.notes, data.shortfall].filter(Boolean).join("; ");
      status(`${data.title}: ${data.tracks.length} tracks${notes ? ` (${notes})` : ""}`);
      const file = await (await post({ ...body, format: "jspf" })).blob();
      if (downloadUrl) URL.revokeObjectURL(downloadUrl);
      downloadUrl = URL.createObjectURL(file);
      const link = $("playlist-download");
      link.href = downloadUrl;
      link.hidden = false;
    } catch (error) {
      status(`Could not make a playlist: ${error.message}`, true);
    }
  }

  function fromList() {
    const history = likedHistory();
    if (!history.length) {
      status("Add a few artists you like first.", true);
      return;
    }
    make({ history, mode: $("playlist-mode").value, n: 30 }, "from your artists");
  }

  function fromPrompt(kind) {
    const text = $("playlist-seed").value.trim().replace(/[()]/g, "");
    if (!text) {
      status(`Type ${kind === "tag" ? "a tag" : "an artist"} first.`, true);
      return;
    }
    make({ prompt: `${kind}:(${text})`, mode: "easy", n: 30 }, `from the ${kind} ${text}`);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("playlist-from-list").addEventListener("click", fromList);
    $("playlist-from-artist").addEventListener("click", () => fromPrompt("artist"));
    $("playlist-from-tag").addEventListener("click", () => fromPrompt("tag"));
  });
  // For tests and people who want the last request again.
  window.tastemakerPlaylist = { last: () => lastRequest };
})();
