/*
 * Chatmeter chat widget. Embedded with one tag:
 *
 *   <script src="https://HOST/widget.js" data-assistant="PUBLIC_KEY" async></script>
 *
 * Plain JavaScript, no dependencies, no build step. Everything it draws lives
 * in a shadow root, so the page's styles and the widget's never meet. Text from
 * the server (answers, sources, settings) is only ever set as text, never
 * parsed as HTML; answers are drawn by ChatmeterMarkdown (markdown.js) from a
 * small allow-list of elements. Every word the visitor reads comes from the
 * server, in the visitor's language or the customer's own wording. When the
 * assistant cannot be shown here (unknown, inactive, another website) the widget
 * adds nothing to the page and logs nothing.
 *
 * The server sends markdown.js, styles.js (NARROW, STYLES) and this file as one
 * script, in one strict-mode function scope (chatmeter.web.widget).
 */
(() => {

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
  const THEMES = ["auto", "light", "dark"];
  const MAX_LANGUAGES = 200; // characters of navigator.languages sent: the server's bound

  // The one colour scheme the page declares (CSS color-scheme on <html> or <body>, else
  // <meta name="color-scheme">), or null when it declares none or both.
  const pageScheme = () => {
    const single = (value) => {
      const words = String(value || "").toLowerCase().split(/\s+/);
      const dark = words.includes("dark");
      const light = words.includes("light");
      return dark === light ? null : dark ? "dark" : "light";
    };
    try {
      for (const node of [document.body, document.documentElement]) {
        const found = node && single(getComputedStyle(node).colorScheme);
        if (found) return found;
      }
    } catch {
      // no computed style (a detached document): fall through to the meta tag
    }
    const meta = document.querySelector('meta[name="color-scheme"]');
    return meta ? single(meta.getAttribute("content")) : null;
  };

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
          cutOff: m.cutOff === true,
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
  // White or black, whichever contrasts more with the brand colour: one of the two is
  // always at least 4.58:1 (at worst, on a mid grey), so small text on the accent
  // passes WCAG AA whatever the customer picked. A softer black would not: #111827
  // on #777777 is 3.98:1.
  const textOn = (hex) => {
    const channel = (i) => {
      const c = parseInt(hex.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    };
    const luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
    return 1.05 / (luminance + 0.05) >= (luminance + 0.05) / 0.05 ? "#ffffff" : "#000000";
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

  // A source as the visitor reads it: the document's title, the section's heading and,
  // in a PDF, the page (the server sends no page for other files, nor any file name).
  const citations = (sources) => {
    if (!Array.isArray(sources)) return [];
    const seen = new Set();
    const kept = [];
    for (const source of sources) {
      const title = source && typeof source.title === "string" ? source.title.trim() : "";
      if (!title) continue;
      const heading = typeof source.heading === "string" ? source.heading.trim() : "";
      const page = Number.isInteger(source.page) ? `p. ${source.page}` : "";
      const name = [title, heading !== title ? heading : "", page].filter(Boolean).join(" · ");
      if (seen.has(name)) continue;
      seen.add(name);
      const passage = typeof source.passage === "string" ? source.passage.slice(0, 280) : "";
      kept.push({ name, passage });
    }
    return kept;
  };

  // --- the widget ---------------------------------------------------------------------

  // The words of the visitor's language (or the customer's), as the server sent them.
  const wordsOf = (texts) => {
    const words = {};
    if (texts && typeof texts === "object") {
      for (const [key, text] of Object.entries(texts)) if (typeof text === "string") words[key] = text;
    }
    return (key) => words[key] || "";
  };

  function mount(settings) {
    const say = wordsOf(settings.texts);
    const title = typeof settings.title === "string" && settings.title.trim() ? settings.title : say("conversation");
    const accent = accentOf(settings.color);
    const theme = THEMES.includes(settings.theme) ? settings.theme : "auto";
    const lang = typeof settings.lang === "string" && /^[a-z]{2,3}$/.test(settings.lang) ? settings.lang : "en";
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

    // Focusable with a name, so that a keyboard can scroll back through the conversation.
    const log = h("div", {
      class: "log", role: "log", "aria-live": "off", "aria-label": say("conversation"), tabindex: 0,
    });
    const live = h("div", { class: "sr-only", "aria-live": "polite", "aria-atomic": "true" });
    const input = h("textarea", {
      class: "input", rows: 1, maxlength: maxChars, placeholder: say("placeholder"),
      "aria-label": say("placeholder"), enterkeyhint: "send",
    });
    const send = h("button", { class: "send", type: "submit", "aria-label": say("send"), disabled: true }, icon("send"));
    const form = h("form", { class: "composer" }, input, send);
    const restart = h("button", { class: "tool", type: "button", "aria-label": say("restart"), title: say("restart") }, icon("restart", 18));
    const close = h("button", { class: "tool", type: "button", "aria-label": say("close") }, icon("close"));
    const panel = h(
      "section",
      { class: "panel", id: "cm-panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "cm-title", hidden: true },
      h("header", { class: "head" },
        h("div", { class: "avatar", "aria-hidden": "true" }, icon("chat", 20)),
        h("div", { class: "who" },
          h("h2", { class: "title", id: "cm-title", text: title }),
          h("p", { class: "subtitle", text: say("subtitle") })),
        restart, close),
      log, form,
      h("p", { class: "foot", text: say("powered_by") }),
      live,
    );
    const launcher = h("button", {
      class: "launcher", type: "button", "aria-controls": "cm-panel", "aria-expanded": "false",
      "aria-label": `${say("open")}: ${title}`,
    }, icon("chat", 26));
    const frame = h("div", { class: `cm ${settings.position === "left" ? "left" : "right"}`, lang }, panel, launcher);
    frame.style.setProperty("--accent", accent);
    frame.style.setProperty("--on-accent", textOn(accent));
    root.append(frame);
    // "auto": the page's own scheme when it declares only one, else the visitor's
    // preference (the stylesheet's prefers-color-scheme). A page that switches its
    // scheme (a class or style on <html> or <body>) switches the widget with it.
    const showTheme = () => {
      const shown = theme === "auto" ? pageScheme() || "auto" : theme;
      frame.classList.remove(...THEMES);
      frame.classList.add(shown);
    };
    showTheme();
    if (theme === "auto" && window.MutationObserver) {
      const watch = new MutationObserver(showTheme);
      const what = { attributes: true, attributeFilter: ["class", "style", "data-theme", "content"] };
      watch.observe(document.documentElement, what);
      if (document.body) watch.observe(document.body, what);
      if (document.head) watch.observe(document.head, { ...what, childList: true, subtree: true });
    }

    // --- messages

    const nearBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    const toBottom = () => { log.scrollTop = log.scrollHeight; };

    const sourceList = (sources) => {
      const list = h("ul", { class: "sources", "aria-label": say("sources") });
      sources.forEach((source, i) => {
        list.append(h("li", { class: "source", title: source.passage || null },
          h("span", { class: "num", text: String(i + 1) }),
          h("span", { class: "name", text: source.name })));
      });
      return list;
    };

    // "Helpful" / "Not helpful" under an answer: one vote, which a second click on the
    // other button changes; the pressed button shows the vote given.
    const VOTES = [["up", "up", say("helpful")], ["down", "downvote", say("not_helpful")]];
    const votes = (m) => {
      const group = h("div", { class: "votes", role: "group", "aria-label": say("rate_question") });
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
            live.textContent = say("thanks");
          } catch {
            live.textContent = say("rating_failed");
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

    // An answer's text as Markdown (see markdown.js); everything else stays plain text.
    const answerBubble = (text) => {
      const node = h("div", { class: "bubble md" });
      node.append(ChatmeterMarkdown.render(text, document));
      return node;
    };
    const cutOffMarker = () => h("p", { class: "cut", text: say("cut_off") });

    const bubble = (role, text, { notice = false } = {}) => {
      const message = h("div", { class: `msg ${role === "user" ? "user" : "bot"}${notice ? " notice" : ""}` },
        h("div", { class: "bubble", text }));
      log.append(message);
      return message;
    };

    const render = () => {
      log.replaceChildren();
      if (welcome) bubble("assistant", welcome);
      for (const m of state.messages) {
        if (m.role === "user") {
          bubble("user", m.text);
          continue;
        }
        const shown = h("div", { class: "msg bot" }, answerBubble(m.text));
        if (m.cutOff) shown.append(cutOffMarker());
        if (m.sources.length) shown.append(sourceList(m.sources));
        if (m.messageId && m.conversation) shown.append(votes(m));
        log.append(shown);
      }
      toBottom();
    };

    // --- opening and closing; on a phone the open panel is modal

    const narrow = window.matchMedia ? window.matchMedia(NARROW) : null;
    // While modal: the page's elements this made inert, and the scrolling it stopped,
    // so that closing gives back exactly what was there.
    let modal = null;
    const OVERFLOW = ["overflow-x", "overflow-y"]; // longhands: "overflow" may not read back
    const enterModal = () => {
      if (modal) return;
      const made = [...document.body.children].filter((node) => node !== host && !node.inert);
      made.forEach((node) => { node.inert = true; });
      const styles = [document.documentElement.style, document.body.style];
      const overflow = styles.map((style) =>
        OVERFLOW.map((name) => [name, style.getPropertyValue(name), style.getPropertyPriority(name)]));
      styles.forEach((style) => OVERFLOW.forEach((name) => style.setProperty(name, "hidden", "important")));
      modal = { made, styles, overflow };
      panel.setAttribute("aria-modal", "true");
    };
    const leaveModal = () => {
      if (!modal) return;
      modal.made.forEach((node) => { node.inert = false; });
      modal.styles.forEach((style, i) => {
        for (const [name, value, priority] of modal.overflow[i]) {
          if (value) style.setProperty(name, value, priority);
          else style.removeProperty(name);
        }
      });
      modal = null;
      panel.setAttribute("aria-modal", "false");
    };
    const fitModality = () => (!panel.hidden && narrow && narrow.matches ? enterModal() : leaveModal());
    if (narrow) narrow.addEventListener("change", fitModality);

    const setOpen = (open, { focus = true } = {}) => {
      panel.hidden = !open;
      launcher.setAttribute("aria-expanded", String(open));
      launcher.setAttribute("aria-label", open ? say("close") : `${say("open")}: ${title}`);
      launcher.replaceChildren(icon(open ? "down" : "chat", open ? 24 : 26));
      state.open = open;
      saveState(state);
      fitModality();
      if (open) {
        toBottom();
        if (focus) input.focus();
      } else if (focus) {
        launcher.focus();
      }
    };

    // Tab and Shift+Tab go round the panel's own controls while it is modal.
    const focusables = () =>
      [...panel.querySelectorAll('a[href], button:not(:disabled), textarea:not(:disabled), [tabindex="0"]')]
        .filter((node) => node.getClientRects().length);
    const trapFocus = (event) => {
      const all = focusables();
      if (!all.length) return;
      const first = all[0];
      const last = all[all.length - 1];
      const current = root.activeElement;
      if (event.shiftKey && (current === first || !all.includes(current))) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && (current === last || !all.includes(current))) {
        event.preventDefault();
        first.focus();
      }
    };

    launcher.addEventListener("click", () => setOpen(panel.hidden));
    close.addEventListener("click", () => setOpen(false));
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        setOpen(false);
      } else if (event.key === "Tab" && modal) {
        trapFocus(event);
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
        h("div", { class: "bubble typing", role: "img", "aria-label": say("typing") },
          h("span", { class: "dot" }), h("span", { class: "dot" }), h("span", { class: "dot" })));
      log.append(reply);
      log.setAttribute("aria-busy", "true");
      toBottom();

      const answer = h("div", { class: "bubble md" });
      let text = "";
      let sources = [];
      let messageId = null;
      let cutOff = false;
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
          failure = response.status === 429 ? say("too_fast")
            : code === "busy" ? say("busy")
            : code === "conversation_full" ? say("full")
            : say("unavailable");
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
              if (!text) reply.replaceChildren(answer);
              text += data.text;
              // Drawn again from the whole text: a "**" or a list only means something
              // once its end has arrived.
              answer.replaceChildren(ChatmeterMarkdown.render(text, document));
              if (follow) toBottom();
            } else if (event === "done") {
              sources = citations(data.sources);
              if (Number.isInteger(data.message_id)) messageId = data.message_id;
              cutOff = data.cut_off === true;
            } else if (event === "error") {
              failure = say("unavailable");
            }
          }
        }
      } catch {
        failure = say("unavailable");
      }

      const shown = text.trim();
      if (!shown) {
        reply.remove();
        bubble("assistant", failure || say("no_answer"), { notice: true });
        live.textContent = failure || say("no_answer");
      } else {
        if (cutOff) reply.append(cutOffMarker());
        if (sources.length) reply.append(sourceList(sources));
        const said = {
          role: "assistant", text, sources, messageId, conversation: state.conversationId, rating: null, cutOff,
        };
        if (messageId && said.conversation) reply.append(votes(said));
        state.messages.push({ role: "user", text: question }, said);
        saveState(state);
        live.textContent = `${title}: ${answer.textContent}${cutOff ? ` ${say("cut_off")}` : ""}`;
      }
      log.removeAttribute("aria-busy");
      toBottom();
      busy = false;
      refresh();
    }

    render();
    document.body.append(host);
    // Reopen where the visitor left off, except full-screen on a phone; never steal focus.
    if (state.open && !(narrow && narrow.matches)) setOpen(true, { focus: false });
  }

  // The browser's languages, most wanted first, for the server to pick the widget's words.
  const visitorLanguages = () => {
    const languages = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
    return languages.filter((tag) => typeof tag === "string" && tag).join(",").slice(0, MAX_LANGUAGES);
  };

  const start = async () => {
    let settings;
    try {
      const url = new URL(endpoint("widget"));
      const languages = visitorLanguages();
      if (languages) url.searchParams.set("lang", languages);
      const response = await fetch(url.href, { credentials: "omit", cache: "no-store" });
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
