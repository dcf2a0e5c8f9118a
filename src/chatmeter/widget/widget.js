/*
 * Chatmeter chat widget. Embedded with one tag:
 *
 *   <script src="https://HOST/widget.js" data-assistant="PUBLIC_KEY" async></script>
 *
 * Plain JavaScript, no dependencies, no build step. Everything it draws lives
 * in a shadow root, so the page's styles and the widget's never meet. Text from
 * the server (answers, sources, settings) is only ever set as text, never
 * parsed as HTML. When the assistant cannot be shown here (unknown, inactive,
 * another website) the widget adds nothing to the page and logs nothing.
 */
(() => {
  "use strict";

  const script =
    document.currentScript || document.querySelector('script[data-assistant][src*="widget.js"]');
  const key = script && script.dataset.assistant;
  if (!key) return;
  // One widget per assistant, however many times the tag is on the page.
  const running = (window[Symbol.for("chatmeter.widgets")] ||= new Set());
  if (running.has(key)) return;
  running.add(key);

  const base = new URL(".", script.src);
  const endpoint = (name) =>
    new URL(`api/v1/public/${encodeURIComponent(key)}/${name}`, base).href;
  const STORAGE_KEY = `chatmeter:${key}`;
  const KEPT_MESSAGES = 60;
  const UNAVAILABLE = "This assistant is not available right now.";
  const TOO_FAST = "You are sending messages a little fast. Please wait a moment and try again.";
  const BUSY = "Many people are asking right now. Please try again in a moment.";
  const FULL = "This conversation has reached its length limit. Your next message starts a new one.";
  const NO_ANSWER = "Sorry, I have no answer to that.";
  const NARROW = "(max-width: 480px)";

  // --- what survives page loads ------------------------------------------------------

  const loadState = () => {
    let saved = null;
    try {
      saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
    } catch {
      saved = null;
    }
    const state = { conversationId: null, messages: [], open: false };
    if (!saved || typeof saved !== "object") return state;
    if (typeof saved.conversationId === "string") state.conversationId = saved.conversationId;
    if (Array.isArray(saved.messages)) {
      state.messages = saved.messages
        .filter((m) => m && (m.role === "user" || m.role === "assistant") && typeof m.text === "string")
        .map((m) => ({
          role: m.role,
          text: m.text,
          sources: Array.isArray(m.sources)
            ? m.sources.filter((s) => s && typeof s.name === "string")
            : [],
          // What rating the answer needs: its id, its conversation, the vote given.
          messageId: Number.isInteger(m.messageId) ? m.messageId : null,
          conversation: typeof m.conversation === "string" ? m.conversation : null,
          rating: m.rating === "up" || m.rating === "down" ? m.rating : null,
        }));
    }
    state.open = saved.open === true;
    return state;
  };

  const saveState = (state) => {
    state.messages = state.messages.slice(-KEPT_MESSAGES);
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(state));
    } catch {
      // Storage full or disabled: the conversation just won't outlive the page.
    }
  };

  // --- small DOM helpers: nodes and textContent, never parsed markup ----------------

  const h = (tag, attributes = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    node.append(...children);
    return node;
  };

  const SVG = "http://www.w3.org/2000/svg";
  const ICONS = {
    chat:
      "M21 11.5a8.4 8.4 0 0 1-.9 3.8 8.5 8.5 0 0 1-7.6 4.7 8.4 8.4 0 0 1-3.8-.9L3 21l1.9-5.7" +
      "a8.4 8.4 0 0 1-.9-3.8 8.5 8.5 0 0 1 4.7-7.6 8.4 8.4 0 0 1 3.8-.9h.5a8.5 8.5 0 0 1 8 8v.5z",
    down: "M6 9l6 6 6-6",
    close: "M18 6 6 18M6 6l12 12",
    send: "M12 19V5M5 12l7-7 7 7",
    restart: "M3 4v6h6M3.5 15a9 9 0 1 0 2.1-9.4L3 10",
    up: "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.3a2 2 0 0 0 2-1.7l1.4-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3",
    downvote: "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.7a2 2 0 0 0-2 1.7l-1.4 9a2 2 0 0 0 2 2.3zm7-13h2.7A2.3 2.3 0 0 1 22 4v7a2.3 2.3 0 0 1-2.3 2H17",
  };
  const icon = (which, size = 20) => {
    const svg = document.createElementNS(SVG, "svg");
    const attributes = {
      viewBox: "0 0 24 24",
      width: size,
      height: size,
      fill: "none",
      stroke: "currentColor",
      "stroke-width": 2,
      "stroke-linecap": "round",
      "stroke-linejoin": "round",
      "aria-hidden": "true",
      focusable: "false",
    };
    for (const [name, value] of Object.entries(attributes)) svg.setAttribute(name, value);
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", ICONS[which]);
    svg.append(path);
    return svg;
  };

  // The colour comes from the server, which already checks it; check again anyway,
  // it ends up in a style.
  const accentOf = (value) => (/^#[0-9a-f]{6}$/i.test(value) ? value : "#2563eb");
  const textOn = (hex) => {
    const channel = (i) => {
      const c = parseInt(hex.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    };
    const luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
    return 1.05 / (luminance + 0.05) >= (luminance + 0.05) / 0.05 ? "#ffffff" : "#111827";
  };

  // --- the conversation over Server-Sent Events ---------------------------------------

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
          if (!data.length) continue;
          let parsed;
          try {
            parsed = JSON.parse(data.join("\n"));
          } catch {
            continue;
          }
          yield [event, parsed && typeof parsed === "object" ? parsed : {}];
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // The refusal's code from its JSON body ({"error": {"code": ...}}), or "".
  const errorCode = async (response) => {
    try {
      const body = await response.json();
      return body && body.error && typeof body.error.code === "string" ? body.error.code : "";
    } catch {
      return "";
    }
  };

  const citations = (sources) => {
    if (!Array.isArray(sources)) return [];
    const seen = new Set();
    const kept = [];
    for (const source of sources) {
      if (!source || typeof source.filename !== "string") continue;
      const heading = typeof source.heading === "string" ? source.heading.trim() : "";
      // Pages mean something in a PDF; every other file is "page 1".
      const paged = /\.pdf$/i.test(source.filename) && Number.isInteger(source.page);
      const name = [source.filename, heading && heading !== source.filename ? heading : "",
        paged ? `p. ${source.page}` : ""].filter(Boolean).join(" · ");
      if (seen.has(name)) continue;
      seen.add(name);
      const passage = typeof source.passage === "string" ? source.passage.slice(0, 280) : "";
      kept.push({ name, passage });
    }
    return kept;
  };

  // --- the widget ---------------------------------------------------------------------

  const STYLES = `
:host { all: initial !important; }
.cm, .cm * { box-sizing: border-box; }
.cm {
  --accent: #2563eb; --on-accent: #ffffff;
  font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 15px; line-height: 1.45; font-weight: 400; font-style: normal;
  color: #111827; text-align: left; letter-spacing: normal; text-transform: none;
  -webkit-font-smoothing: antialiased;
}
button { font: inherit; margin: 0; }
.launcher {
  position: fixed; bottom: 20px; right: 20px; z-index: 2147483000;
  width: 58px; height: 58px; border-radius: 50%; border: 0; padding: 0;
  display: grid; place-items: center; cursor: pointer;
  background: var(--accent); color: var(--on-accent);
  box-shadow: 0 10px 28px rgba(15, 23, 42, .28), 0 2px 6px rgba(15, 23, 42, .16);
  transition: transform .16s ease, box-shadow .16s ease;
}
.launcher:hover { transform: translateY(-2px) scale(1.03); }
.launcher:focus-visible { outline: 3px solid var(--accent); outline-offset: 4px; }
.left .launcher { right: auto; left: 20px; }
.panel {
  position: fixed; bottom: 92px; right: 20px; z-index: 2147483000;
  width: 380px; max-width: calc(100vw - 40px);
  height: 620px; max-height: calc(100vh - 116px);
  display: flex; flex-direction: column; overflow: hidden;
  background: #ffffff; border-radius: 18px;
  box-shadow: 0 24px 60px rgba(15, 23, 42, .22), 0 4px 14px rgba(15, 23, 42, .10);
  animation: cm-in .18s ease-out;
}
.left .panel { right: auto; left: 20px; }
.panel[hidden] { display: none; }
@keyframes cm-in { from { opacity: 0; transform: translateY(10px) scale(.98); } }
.head {
  display: flex; align-items: center; gap: 12px; padding: 16px 12px 16px 18px;
  background: var(--accent); color: var(--on-accent);
}
.avatar {
  flex: none; width: 38px; height: 38px; border-radius: 50%; display: grid; place-items: center;
  background: color-mix(in srgb, var(--on-accent) 18%, transparent);
}
.who { flex: 1; min-width: 0; }
.title {
  margin: 0; font-size: 16px; font-weight: 650; line-height: 1.25;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
}
.subtitle { margin: 2px 0 0; font-size: 12.5px; opacity: .85; }
.tool {
  flex: none; width: 34px; height: 34px; border-radius: 10px; border: 0; padding: 0;
  display: grid; place-items: center; cursor: pointer;
  background: transparent; color: inherit; opacity: .9;
}
.tool:hover { background: color-mix(in srgb, var(--on-accent) 16%, transparent); opacity: 1; }
.tool:focus-visible { outline: 2px solid currentColor; outline-offset: 1px; }
.log {
  flex: 1; overflow-y: auto; overscroll-behavior: contain; padding: 18px 16px;
  display: flex; flex-direction: column; gap: 12px; background: #f8fafc;
}
.msg { display: flex; flex-direction: column; max-width: 86%; }
.msg.user { align-self: flex-end; align-items: flex-end; }
.msg.bot { align-self: flex-start; align-items: flex-start; }
.bubble {
  padding: 10px 14px; border-radius: 18px; white-space: pre-wrap; overflow-wrap: anywhere;
}
.user .bubble { background: var(--accent); color: var(--on-accent); border-bottom-right-radius: 6px; }
.bot .bubble {
  background: #ffffff; color: #111827; border: 1px solid #e5e7eb; border-bottom-left-radius: 6px;
  box-shadow: 0 1px 2px rgba(15, 23, 42, .05);
}
.notice .bubble { background: #f1f5f9; color: #475569; border-color: #e2e8f0; box-shadow: none; }
.typing { display: inline-flex; gap: 5px; padding: 15px 16px; }
.dot { width: 7px; height: 7px; border-radius: 50%; background: #94a3b8; animation: cm-dot 1.2s infinite ease-in-out; }
.dot:nth-child(2) { animation-delay: .15s; }
.dot:nth-child(3) { animation-delay: .3s; }
@keyframes cm-dot { 0%, 80%, 100% { opacity: .35; transform: none; } 40% { opacity: 1; transform: translateY(-3px); } }
.sources { list-style: none; margin: 8px 0 0; padding: 0; display: flex; flex-wrap: wrap; gap: 6px; max-width: 100%; }
.source {
  display: inline-flex; align-items: center; gap: 6px; max-width: 100%;
  padding: 3px 10px 3px 4px; border-radius: 999px; border: 1px solid #e2e8f0; background: #ffffff;
  font-size: 12px; line-height: 1.35; color: #475569;
}
.num {
  flex: none; min-width: 18px; height: 18px; padding: 0 5px; border-radius: 999px;
  display: grid; place-items: center; background: #e2e8f0; color: #334155; font-size: 11px; font-weight: 600;
}
.name { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.votes { display: flex; gap: 6px; margin-top: 6px; }
.vote {
  width: 32px; height: 32px; border-radius: 10px; border: 1px solid #e2e8f0; padding: 0;
  display: grid; place-items: center; cursor: pointer; background: #ffffff; color: #64748b;
}
.vote:hover { color: #111827; border-color: #cbd5e1; }
.vote[aria-pressed="true"] { background: var(--accent); border-color: var(--accent); color: var(--on-accent); }
.vote:disabled { cursor: default; opacity: .6; }
.vote:focus-visible { outline: 3px solid color-mix(in srgb, var(--accent) 45%, transparent); outline-offset: 2px; }
.composer {
  display: flex; align-items: flex-end; gap: 8px; padding: 12px 12px 8px;
  border-top: 1px solid #e5e7eb; background: #ffffff;
}
.input {
  flex: 1; min-width: 0; min-height: 44px; max-height: 128px; margin: 0; resize: none;
  padding: 11px 14px; border: 1px solid #d1d5db; border-radius: 14px; outline: none;
  font: inherit; line-height: 1.4; color: #111827; background: #ffffff;
}
.input::placeholder { color: #9ca3af; }
.input:focus { border-color: var(--accent); box-shadow: 0 0 0 3px color-mix(in srgb, var(--accent) 22%, transparent); }
.send {
  flex: none; width: 44px; height: 44px; border-radius: 50%; border: 0; padding: 0;
  display: grid; place-items: center; cursor: pointer; background: var(--accent); color: var(--on-accent);
}
.send:disabled { opacity: .4; cursor: default; }
.send:focus-visible { outline: 3px solid color-mix(in srgb, var(--accent) 45%, transparent); outline-offset: 2px; }
.foot { margin: 0; padding: 0 12px 10px; background: #ffffff; font-size: 11px; color: #94a3b8; text-align: center; }
.sr-only {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap;
}
@media ${NARROW} {
  .panel, .left .panel {
    inset: 0; width: auto; max-width: none; height: auto; max-height: none; border-radius: 0;
  }
  .panel:not([hidden]) ~ .launcher { display: none; }
  .input { font-size: 16px; }
}
@media (prefers-reduced-motion: reduce) {
  .panel, .dot, .launcher { animation: none; transition: none; }
}
`;

  function mount(settings) {
    const title = typeof settings.title === "string" && settings.title.trim() ? settings.title : "Chat";
    const accent = accentOf(settings.color);
    const welcome = typeof settings.welcome_message === "string" ? settings.welcome_message.trim() : "";
    const maxChars = Number.isInteger(settings.max_message_chars) ? settings.max_message_chars : 2000;
    const state = loadState();

    const host = h("chatmeter-widget");
    const root = host.attachShadow({ mode: "open" });
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLES); // not subject to a page's CSP for inline styles
      root.adoptedStyleSheets = [sheet];
    } catch {
      root.append(h("style", { text: STYLES }));
    }

    const log = h("div", { class: "log", role: "log", "aria-live": "off", "aria-label": "Conversation" });
    const live = h("div", { class: "sr-only", "aria-live": "polite", "aria-atomic": "true" });
    const input = h("textarea", {
      class: "input", rows: 1, maxlength: maxChars, placeholder: "Write a message…",
      "aria-label": `Message ${title}`, enterkeyhint: "send",
    });
    const send = h("button", { class: "send", type: "submit", "aria-label": "Send message", disabled: true }, icon("send"));
    const form = h("form", { class: "composer" }, input, send);
    const restart = h("button", { class: "tool", type: "button", "aria-label": "Start a new conversation", title: "New conversation" }, icon("restart", 18));
    const close = h("button", { class: "tool", type: "button", "aria-label": "Close chat" }, icon("close"));
    const panel = h(
      "section",
      { class: "panel", id: "cm-panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "cm-title", hidden: true },
      h("header", { class: "head" },
        h("div", { class: "avatar", "aria-hidden": "true" }, icon("chat", 20)),
        h("div", { class: "who" },
          h("h2", { class: "title", id: "cm-title", text: title }),
          h("p", { class: "subtitle", text: "Ask us anything" })),
        restart, close),
      log, form,
      h("p", { class: "foot", text: "Powered by Chatmeter" }),
      live,
    );
    const launcher = h("button", {
      class: "launcher", type: "button", "aria-controls": "cm-panel", "aria-expanded": "false",
      "aria-label": `Open chat: ${title}`,
    }, icon("chat", 26));
    const frame = h("div", { class: `cm ${settings.position === "left" ? "left" : "right"}` }, panel, launcher);
    frame.style.setProperty("--accent", accent);
    frame.style.setProperty("--on-accent", textOn(accent));
    root.append(frame);

    // --- messages

    const nearBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    const toBottom = () => { log.scrollTop = log.scrollHeight; };

    const sourceList = (sources) => {
      const list = h("ul", { class: "sources", "aria-label": "Sources" });
      sources.forEach((source, i) => {
        list.append(h("li", { class: "source", title: source.passage || null },
          h("span", { class: "num", text: String(i + 1) }),
          h("span", { class: "name", text: source.name })));
      });
      return list;
    };

    // "Helpful" / "Not helpful" under an answer: one vote, which a second click on the
    // other button changes; the pressed button shows the vote given.
    const VOTES = [["up", "up", "Helpful"], ["down", "downvote", "Not helpful"]];
    const votes = (m) => {
      const group = h("div", { class: "votes", role: "group", "aria-label": "Was this answer helpful?" });
      const buttons = VOTES.map(([rating, shape, label]) =>
        h("button", { class: "vote", type: "button", "aria-label": label, title: label,
          "aria-pressed": String(m.rating === rating), "data-rating": rating }, icon(shape, 16)));
      const show = () => buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.rating === m.rating)));
      let sending = false;
      for (const button of buttons) {
        button.addEventListener("click", async () => {
          const rating = button.dataset.rating;
          if (sending || m.rating === rating) return;
          sending = true;
          buttons.forEach((b) => { b.disabled = true; });
          try {
            const response = await fetch(endpoint(`messages/${m.messageId}/rating`), {
              method: "POST",
              credentials: "omit",
              headers: { "Content-Type": "application/json" },
              body: JSON.stringify({ conversation_id: m.conversation, rating }),
            });
            if (!response.ok) throw new Error(String(response.status));
            m.rating = rating;
            saveState(state);
            live.textContent = "Thank you for your feedback.";
          } catch {
            live.textContent = "Your rating could not be sent. Please try again later.";
          }
          sending = false;
          buttons.forEach((b) => { b.disabled = false; });
          show();
          button.focus();
        });
      }
      group.append(...buttons);
      return group;
    };

    const bubble = (role, text, { sources = [], notice = false } = {}) => {
      const message = h("div", { class: `msg ${role === "user" ? "user" : "bot"}${notice ? " notice" : ""}` },
        h("div", { class: "bubble", text }));
      if (sources.length) message.append(sourceList(sources));
      log.append(message);
      return message;
    };

    const render = () => {
      log.replaceChildren();
      if (welcome) bubble("assistant", welcome);
      for (const m of state.messages) {
        const shown = bubble(m.role, m.text, { sources: Array.isArray(m.sources) ? m.sources : [] });
        if (m.role === "assistant" && m.messageId && m.conversation) shown.append(votes(m));
      }
      toBottom();
    };

    // --- opening and closing

    const narrow = window.matchMedia ? window.matchMedia(NARROW) : { matches: false };
    const setOpen = (open, { focus = true } = {}) => {
      panel.hidden = !open;
      launcher.setAttribute("aria-expanded", String(open));
      launcher.setAttribute("aria-label", open ? "Close chat" : `Open chat: ${title}`);
      launcher.replaceChildren(icon(open ? "down" : "chat", open ? 24 : 26));
      state.open = open;
      saveState(state);
      if (open) {
        toBottom();
        if (focus) input.focus();
      } else if (focus) {
        launcher.focus();
      }
    };

    launcher.addEventListener("click", () => setOpen(panel.hidden));
    close.addEventListener("click", () => setOpen(false));
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        setOpen(false);
      }
    });
    restart.addEventListener("click", () => {
      if (busy) return;
      state.conversationId = null;
      state.messages = [];
      saveState(state);
      render();
      input.focus();
    });

    // --- asking

    let busy = false;
    const refresh = () => {
      send.disabled = busy || !input.value.trim();
      input.style.height = "auto";
      input.style.height = `${Math.min(input.scrollHeight + 2, 128)}px`;
    };
    input.addEventListener("input", refresh);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text || busy) return;
      input.value = "";
      ask(text);
    });

    async function ask(question) {
      busy = true;
      refresh();
      bubble("user", question);
      const reply = h("div", { class: "msg bot" },
        h("div", { class: "bubble typing", "aria-label": "Typing" },
          h("span", { class: "dot" }), h("span", { class: "dot" }), h("span", { class: "dot" })));
      log.append(reply);
      log.setAttribute("aria-busy", "true");
      toBottom();

      const answer = document.createTextNode("");
      let text = "";
      let sources = [];
      let messageId = null;
      let failure = null;
      try {
        const response = await fetch(endpoint("chat"), {
          method: "POST",
          credentials: "omit",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify({ message: question, conversation_id: state.conversationId }),
        });
        if (!response.ok || !response.body) {
          const code = await errorCode(response);
          failure = response.status === 429 ? TOO_FAST
            : code === "busy" ? BUSY
            : code === "conversation_full" ? FULL
            : UNAVAILABLE;
          if (code === "conversation_full") {
            state.conversationId = null;
            saveState(state);
          }
        } else {
          for await (const [event, data] of serverEvents(response.body)) {
            if ((event === "start" || event === "done") && typeof data.conversation_id === "string") {
              state.conversationId = data.conversation_id;
            }
            if (event === "delta" && typeof data.text === "string" && data.text) {
              const follow = nearBottom();
              if (!text) reply.replaceChildren(h("div", { class: "bubble" }, answer));
              text += data.text;
              answer.data = text;
              if (follow) toBottom();
            } else if (event === "done") {
              sources = citations(data.sources);
              if (Number.isInteger(data.message_id)) messageId = data.message_id;
            } else if (event === "error") {
              failure = UNAVAILABLE;
            }
          }
        }
      } catch {
        failure = UNAVAILABLE;
      }

      const shown = text.trim();
      if (!shown) {
        reply.remove();
        bubble("assistant", failure || NO_ANSWER, { notice: true });
        live.textContent = failure || NO_ANSWER;
      } else {
        if (sources.length) reply.append(sourceList(sources));
        const said = { role: "assistant", text, sources, messageId, conversation: state.conversationId, rating: null };
        if (messageId && said.conversation) reply.append(votes(said));
        state.messages.push({ role: "user", text: question }, said);
        saveState(state);
        live.textContent = `${title}: ${text}`;
      }
      log.removeAttribute("aria-busy");
      toBottom();
      busy = false;
      refresh();
    }

    render();
    document.body.append(host);
    // Reopen where the visitor left off, except full-screen on a phone; never steal focus.
    if (state.open && !narrow.matches) setOpen(true, { focus: false });
  }

  const start = async () => {
    let settings;
    try {
      const response = await fetch(endpoint("widget"), { credentials: "omit", cache: "no-store" });
      if (!response.ok) return; // nothing to show here: show nothing, say nothing
      settings = await response.json();
    } catch {
      return;
    }
    if (!settings || typeof settings !== "object") return;
    if (!document.body) {
      await new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
    }
    mount(settings);
  };

  start().catch(() => {});
})();
