// The assistants pages: training uploads with live progress, the streaming test chat,
// the embed snippet's copy button and the colour picker. Model output and file names
// only ever reach the page as text (textContent), never as HTML.
(() => {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const number = new Intl.NumberFormat("en-US");
  const POLL_MS = 1000;
  const OFFLINE = "We could not reach Chatmeter. Check your connection and try again.";

  const part = (root, name) => root.querySelector(`[data-${name}]`);

  // The balance in the sidebar, after a test chat has spent some of it.
  function showFigures(figures) {
    if (!figures) return;
    document.querySelectorAll("[data-figure]").forEach((node) => {
      const value = figures[node.dataset.figure];
      if (value !== undefined) node.textContent = typeof value === "number" ? number.format(value) : value;
    });
    document.querySelectorAll("[data-meter]").forEach((bar) => { bar.style.width = `${figures.percent}%`; });
  }

  // An answer as the widget shows it: its Markdown made into safe elements
  // (chatmeter/widget/markdown.js, never parsed as HTML), or plain text if that script
  // did not load.
  function showMarkdown(bubble, text) {
    const markdown = window.ChatmeterMarkdown;
    if (markdown) {
      bubble.classList.add("rich");
      bubble.replaceChildren(markdown.render(text, document));
    } else {
      bubble.textContent = text;
    }
  }
  // Stored answers (a conversation's page), rendered once.
  document.querySelectorAll("[data-markdown]").forEach((bubble) => showMarkdown(bubble, bubble.textContent));

  // --- settings: the colour picker and the colour code stay in step ---------------------

  document.querySelectorAll("[data-colour-for]").forEach((picker) => {
    const field = document.getElementById(picker.dataset.colourFor);
    if (!field) return;
    picker.addEventListener("input", () => { field.value = picker.value; });
    field.addEventListener("input", () => {
      if (/^#[0-9a-fA-F]{6}$/.test(field.value.trim())) picker.value = field.value.trim().toLowerCase();
    });
  });

  // --- embed: copy the snippet ---------------------------------------------------------

  document.querySelectorAll("[data-copy]").forEach((button) => {
    const source = document.getElementById(button.dataset.copy);
    const status = part(document, "copy-status");
    const label = part(button, "copy-label");
    button.addEventListener("click", async () => {
      const text = source.textContent;
      let copied = false;
      try {
        await navigator.clipboard.writeText(text);
        copied = true;
      } catch (_) {
        copied = copyBySelection(text);
      }
      if (copied) {
        status.textContent = "Copied. Paste it into your website's HTML.";
        label.textContent = "Copied";
        setTimeout(() => { label.textContent = "Copy"; }, 2000);
      } else {
        window.getSelection().selectAllChildren(source);
        status.textContent = "Press Ctrl+C (or ⌘C) to copy the selected snippet.";
      }
    });
  });

  // Without the asynchronous clipboard (plain http, older browsers): a hidden text field.
  function copyBySelection(text) {
    const field = document.createElement("textarea");
    field.value = text;
    field.setAttribute("readonly", "");
    field.className = "visually-hidden";
    document.body.append(field);
    field.select();
    let done = false;
    try { done = document.execCommand("copy"); } catch (_) { done = false; }
    field.remove();
    return done;
  }

  // --- training files ---------------------------------------------------------------------

  const zone = document.querySelector("[data-dropzone]");
  if (zone) training(zone);

  function training(zone) {
    const input = part(zone, "file-input");
    const list = document.querySelector("[data-file-list]");
    const template = document.getElementById("file-row-template");
    const empty = document.querySelector("[data-files-empty]");
    const uploadUrl = zone.dataset.uploadUrl;
    let timer = null;
    let uploading = 0;

    part(zone, "upload-submit").hidden = true; // files go up as soon as they are chosen
    input.addEventListener("change", () => {
      uploadAll(input.files);
      input.value = "";
    });
    ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("is-over");
    }));
    ["dragleave", "dragend"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("is-over")));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("is-over");
      uploadAll(event.dataTransfer?.files || []);
    });
    // A file dropped beside the zone must not make the browser leave the page to show it.
    ["dragover", "drop"].forEach((type) => window.addEventListener(type, (event) => event.preventDefault()));

    function newRow() {
      const row = template.content.firstElementChild.cloneNode(true);
      list.append(row);
      empty.hidden = true;
      const remove = part(row, "remove");
      remove.addEventListener("submit", (event) => {
        if (!row.dataset.fileId) { // an upload that never arrived: nothing to remove but the row
          event.preventDefault();
          row.remove();
          empty.hidden = list.children.length > 0;
        }
      });
      return row;
    }

    function show(row, view) {
      row.className = `file is-${view.status}`;
      const kind = part(row, "kind");
      kind.textContent = view.kind;
      kind.className = `file-kind k-${view.kind.toLowerCase()}`;
      const name = part(row, "name");
      name.textContent = view.filename;
      name.title = view.filename;
      part(row, "meta").textContent = view.meta;
      const titled = part(row, "source-title");
      titled.hidden = !view.source_title;
      if (view.source_title) {
        part(row, "source-title-text").textContent = view.source_title;
        const link = part(row, "title-link");
        link.href = `${uploadUrl}/${view.id}/title`;
        link.querySelector(".visually-hidden").textContent = ` ${view.filename}`;
      }
      const pill = part(row, "status");
      pill.textContent = view.status_text;
      pill.className = `pill ${view.pill}`;
      const busy = ["uploading", "queued", "processing"].includes(view.status);
      part(row, "progress").hidden = !busy;
      part(row, "progress-bar").style.width = `${view.progress}%`;
      const error = part(row, "error");
      error.textContent = view.error || "";
      error.hidden = !view.error;
      const remove = part(row, "remove");
      remove.hidden = view.status === "uploading";
      remove.querySelector("button").setAttribute("aria-label", `Remove ${view.filename}`);
      if (view.id) {
        row.dataset.fileId = String(view.id);
        remove.action = `${uploadUrl}/${view.id}/delete`;
      }
    }

    function extension(name) {
      const match = /\.([A-Za-z0-9]{1,4})$/.exec(name);
      return match ? match[1].toUpperCase() : "FILE";
    }

    function sizeText(size) {
      if (size < 1024) return `${number.format(size)} bytes`;
      if (size < 1024 * 1024) return `${(size / 1024).toFixed(1).replace(/\.0$/, "")} KB`;
      return `${(size / 1048576).toFixed(1).replace(/\.0$/, "")} MB`;
    }

    function uploadView(file, progress) {
      return {
        status: "uploading", kind: extension(file.name), filename: file.name, progress,
        meta: `${sizeText(file.size)} · uploading`, status_text: `Uploading ${progress}%`, pill: "pill-wait",
      };
    }

    function failedView(file, message) {
      return {
        status: "failed", kind: extension(file.name), filename: file.name, progress: 0,
        meta: `${sizeText(file.size)} · not uploaded`, status_text: "Failed", pill: "pill-off", error: message,
      };
    }

    // One request per file, so each shows its own upload progress.
    function uploadOne(file) {
      const row = newRow();
      show(row, uploadView(file, 0));
      return new Promise((resolve) => {
        const request = new XMLHttpRequest();
        request.open("POST", uploadUrl);
        request.setRequestHeader("X-CSRF-Token", csrf);
        request.setRequestHeader("Accept", "application/json");
        request.upload.addEventListener("progress", (event) => {
          if (event.lengthComputable) show(row, uploadView(file, Math.round((event.loaded * 100) / event.total)));
        });
        request.addEventListener("load", () => {
          let body = {};
          try { body = JSON.parse(request.responseText); } catch (_) { body = {}; }
          if (request.status >= 200 && request.status < 300 && body.files?.length) {
            arrived(row, body.files[0]);
          } else {
            show(row, failedView(file, body.error?.message || "The upload was refused. Please try again."));
          }
          resolve();
        });
        request.addEventListener("error", () => { show(row, failedView(file, OFFLINE)); resolve(); });
        const form = new FormData();
        form.append("files", file, file.name);
        request.send(form);
      });
    }

    function arrived(row, file) {
      const existing = list.querySelector(`[data-file-id="${file.id}"]`);
      if (file.duplicate && existing && existing !== row) {
        row.remove(); // the same content is already here: point at it instead
        existing.classList.add("is-flash");
        part(existing, "meta").textContent = `${file.meta} · already uploaded`;
        return;
      }
      show(row, file);
    }

    async function uploadAll(files) {
      const chosen = Array.from(files);
      if (!chosen.length) return;
      uploading += 1;
      try {
        await Promise.all(chosen.map(uploadOne));
      } finally {
        uploading -= 1;
      }
      poll(0);
    }

    // Training runs in the background: follow it until no file is queued or processing.
    async function refresh() {
      const response = await fetch(list.dataset.filesUrl, {
        credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store",
      });
      if (!response.ok) return response.status >= 500;
      const body = await response.json();
      const known = new Set(body.files.map((file) => String(file.id)));
      list.querySelectorAll("[data-file-id]").forEach((row) => {
        if (!known.has(row.dataset.fileId)) row.remove(); // removed in another tab
      });
      body.files.forEach((file) => {
        show(list.querySelector(`[data-file-id="${file.id}"]`) || newRow(), file);
      });
      showSummary(body.summary);
      return body.summary.busy > 0;
    }

    function showSummary(summary) {
      const line = document.querySelector("[data-training-summary]");
      line.textContent = summary.files ? summary.text : "";
      const figures = document.querySelector("[data-training-figures]");
      figures.hidden = !summary.ready;
      part(figures, "passages").textContent = number.format(summary.passages);
      part(figures, "passages-noun").textContent = summary.passages === 1 ? "passage" : "passages";
      part(figures, "tokens").textContent = number.format(summary.tokens);
      part(figures, "tokens-noun").textContent = summary.tokens === 1 ? "token" : "tokens";
      empty.hidden = list.children.length > 0;
    }

    function poll(delay = POLL_MS) {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        let again = true;
        try { again = await refresh(); } catch (_) { again = true; }
        if (again || uploading) poll();
      }, delay);
    }

    if (list.dataset.busy === "true") poll();
  }

  // --- the test chat ---------------------------------------------------------------------------

  const chatBox = document.querySelector("[data-test-chat]");
  if (chatBox) testChat(chatBox);

  function testChat(box) {
    const log = part(box, "chat-log");
    const form = part(box, "chat-form");
    const input = part(box, "chat-input");
    const send = part(box, "chat-send");
    const out = part(box, "chat-out");
    const error = part(box, "chat-error");
    const welcome = log.firstElementChild;
    let conversationId = null;
    let busy = false;

    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    part(box, "new-chat").addEventListener("click", () => {
      conversationId = null;
      log.replaceChildren(...(welcome ? [welcome] : []));
      showError("");
      input.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      ask(input.value.trim());
    });

    function showError(text) {
      error.textContent = text;
      error.hidden = !text;
    }

    function message(kind, text) {
      const node = document.createElement("div");
      node.className = `msg msg-${kind}`;
      const bubble = document.createElement("div");
      bubble.className = "bubble";
      bubble.textContent = text;
      node.append(bubble);
      log.append(node);
      log.scrollTop = log.scrollHeight;
      return node;
    }

    // Three dots while the answer is on its way; the first words replace them.
    function typing(bubble) {
      bubble.classList.add("typing");
      bubble.setAttribute("aria-label", "The assistant is typing");
      for (let i = 0; i < 3; i += 1) {
        const dot = document.createElement("span");
        dot.className = "dot";
        bubble.append(dot);
      }
    }

    function showAnswer(bubble, text) {
      bubble.classList.remove("typing");
      bubble.removeAttribute("aria-label");
      showMarkdown(bubble, text);
    }

    function cutOff() {
      const note = document.createElement("p");
      note.className = "cut-off";
      note.textContent = "This answer reached the longest answer allowed and was cut short.";
      return note;
    }

    async function ask(question) {
      if (busy) return;
      if (!question) { showError("Type a question first."); input.focus(); return; }
      busy = true;
      send.disabled = true;
      out.hidden = true;
      showError("");
      const asked = message("user", question);
      const answer = message("bot", "");
      answer.classList.add("is-streaming");
      typing(answer.querySelector(".bubble"));
      input.value = "";
      let refused = true;
      try {
        const response = await fetch(box.dataset.chatUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream", "X-CSRF-Token": csrf },
          body: JSON.stringify({ message: question, conversation_id: conversationId }),
        });
        if (!response.ok || !response.body) {
          refusal(await response.json().catch(() => ({})));
          return;
        }
        refused = !(await stream(response.body, answer));
      } catch (_) {
        showError(OFFLINE);
      } finally {
        answer.classList.remove("is-streaming");
        if (refused) { // nothing was answered: the question goes back to the box
          asked.remove();
          answer.remove();
          if (!input.value) input.value = question;
        }
        busy = false;
        send.disabled = false;
        input.focus();
      }
    }

    function refusal(body) {
      const problem = body?.error || {};
      if (problem.code === "out_of_tokens") {
        part(out, "chat-out-text").textContent = problem.message;
        out.hidden = false;
      } else {
        showError(problem.message || "Something went wrong. Please try again.");
      }
    }

    // Returns whether an answer arrived.
    async function stream(body, answer) {
      const bubble = answer.querySelector(".bubble");
      let text = "";
      for await (const [event, data] of serverEvents(body)) {
        if (event === "start") {
          conversationId = data.conversation_id;
        } else if (event === "delta") {
          text += data.text;
          showAnswer(bubble, text);
          log.scrollTop = log.scrollHeight;
        } else if (event === "done") {
          if (!text) bubble.textContent = "(The model gave no answer.)";
          if (data.cut_off) answer.append(cutOff());
          answer.append(meta(data));
          showFigures(data.figures);
          log.scrollTop = log.scrollHeight;
          return true;
        } else if (event === "error") {
          showError(data.message || "The answer broke off. Please try again.");
          return false;
        }
      }
      return text.length > 0;
    }

    function meta(data) {
      const node = document.createElement("div");
      node.className = "answer-meta";
      const figures = document.createElement("p");
      figures.className = "figures";
      figures.dataset.answerFigures = "";
      const tokens = data.tokens || { context: 0, response: 0, total: 0 };
      [["Context", tokens.context, ""], ["Response", tokens.response, ""], ["Total", tokens.total, " tokens"]]
        .forEach(([label, value, unit]) => {
          const span = document.createElement("span");
          const strong = document.createElement("strong");
          strong.textContent = number.format(value);
          span.append(`${label} `, strong, unit);
          figures.append(span);
        });
      node.append(figures);
      const sources = data.sources || [];
      if (sources.length) {
        const list = document.createElement("ul");
        list.className = "sources";
        list.setAttribute("aria-label", "Sources");
        sources.forEach((source, index) => {
          const item = document.createElement("li");
          item.className = "source";
          item.title = source.passage || "";
          const num = document.createElement("span");
          num.className = "source-num";
          num.textContent = String(index + 1);
          const name = document.createElement("span");
          name.className = "source-name";
          // As visitors see it: the document's title; the file's name on hover.
          name.textContent = source.title || source.filename;
          if (source.filename) name.title = source.filename;
          item.append(num, name);
          const where = [source.page ? `page ${source.page}` : "", source.heading || ""].filter(Boolean);
          if (where.length) {
            const place = document.createElement("span");
            place.className = "muted source-where";
            place.textContent = ` · ${where.join(" · ")}`;
            item.append(place);
          }
          list.append(item);
        });
        node.append(list);
      }
      return node;
    }
  }

  // Server-Sent Events from a fetch body, as [event, data] pairs.
  async function* serverEvents(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          let parsed;
          try {
            parsed = JSON.parse(data.join("\n") || "{}");
          } catch (_) {
            continue; // a malformed event: skip it
          }
          yield [event, parsed];
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }
})();
