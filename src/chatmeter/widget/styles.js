/*
 * How the Chatmeter widget looks: the stylesheet of its shadow root. Served in the
 * same script as widget.js, before it; widget.js reads NARROW and STYLES.
 */

// A phone: the open panel fills the screen, and is modal (widget.js).
const NARROW = "(max-width: 480px)";

// The widget's own colours; the accent (the customer's) is set on top. Both palettes
// keep WCAG AA contrast (4.5:1) for every text they carry: the faintest, --faint,
// is 4.76:1 on white and 5.7:1 on the dark surface.
const LIGHT = `
  color-scheme: light;
  --surface: #ffffff; --canvas: #f8fafc; --text: #111827; --muted: #475569; --faint: #64748b;
  --line: #e5e7eb; --field-line: #d1d5db; --soft: #f1f5f9; --chip: #e2e8f0; --chip-text: #334155;
  --link: #1d4ed8; --dot: #94a3b8; --shadow: rgba(15, 23, 42, .22);`;
const DARK = `
  color-scheme: dark;
  --surface: #1e293b; --canvas: #0f172a; --text: #f1f5f9; --muted: #cbd5e1; --faint: #94a3b8;
  --line: #334155; --field-line: #475569; --soft: #334155; --chip: #475569; --chip-text: #f1f5f9;
  --link: #93c5fd; --dot: #94a3b8; --shadow: rgba(0, 0, 0, .55);`;

const STYLES = `
:host { all: initial !important; }
.cm, .cm * { box-sizing: border-box; }
.cm {
  --accent: #2563eb; --on-accent: #ffffff; ${LIGHT}
  font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 15px; line-height: 1.45; font-weight: 400; font-style: normal;
  color: var(--text); text-align: left; letter-spacing: normal; text-transform: none;
  -webkit-font-smoothing: antialiased;
}
.cm.dark { ${DARK} }
@media (prefers-color-scheme: dark) {
  .cm.auto { ${DARK} }
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
  background: var(--surface); color: var(--text); border-radius: 18px;
  box-shadow: 0 24px 60px var(--shadow), 0 4px 14px rgba(15, 23, 42, .10);
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
/* Full colour, no opacity: faded on-accent text drops under 4.5:1 on some brand colours. */
.subtitle { margin: 2px 0 0; font-size: 12.5px; }
.tool {
  flex: none; width: 34px; height: 34px; border-radius: 10px; border: 0; padding: 0;
  display: grid; place-items: center; cursor: pointer;
  background: transparent; color: inherit;
}
.tool:hover { background: color-mix(in srgb, var(--on-accent) 16%, transparent); }
.tool:focus-visible { outline: 2px solid currentColor; outline-offset: 1px; }
.log {
  flex: 1; overflow-y: auto; overscroll-behavior: contain; padding: 18px 16px;
  display: flex; flex-direction: column; gap: 12px; background: var(--canvas);
}
.log:focus-visible { outline: 3px solid color-mix(in srgb, var(--accent) 60%, var(--text)); outline-offset: -3px; }
.msg { display: flex; flex-direction: column; max-width: 86%; }
.msg.user { align-self: flex-end; align-items: flex-end; }
.msg.bot { align-self: flex-start; align-items: flex-start; }
.bubble {
  padding: 10px 14px; border-radius: 18px; white-space: pre-wrap; overflow-wrap: anywhere;
}
.user .bubble { background: var(--accent); color: var(--on-accent); border-bottom-right-radius: 6px; }
.bot .bubble {
  background: var(--surface); color: var(--text); border: 1px solid var(--line); border-bottom-left-radius: 6px;
  box-shadow: 0 1px 2px rgba(15, 23, 42, .05);
}
.notice .bubble { background: var(--soft); color: var(--muted); border-color: var(--line); box-shadow: none; }
.bubble.md { white-space: normal; }
.md p, .md ul, .md ol, .md pre { margin: 0 0 8px; }
.md > :last-child { margin-bottom: 0; }
.md ul, .md ol { padding-left: 20px; }
.md li + li { margin-top: 2px; }
.md a { color: var(--link); text-decoration: underline; }
.md code {
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px;
  background: var(--soft); border-radius: 5px; padding: 1px 4px;
}
.md pre { background: var(--soft); border-radius: 8px; padding: 8px 10px; overflow-x: auto; white-space: pre; }
.md pre code { background: none; padding: 0; }
.cut { margin: 4px 0 0 4px; font-size: 12.5px; font-style: italic; color: var(--muted); }
.typing { display: inline-flex; gap: 5px; padding: 15px 16px; }
.dot { width: 7px; height: 7px; border-radius: 50%; background: var(--dot); animation: cm-dot 1.2s infinite ease-in-out; }
.dot:nth-child(2) { animation-delay: .15s; }
.dot:nth-child(3) { animation-delay: .3s; }
@keyframes cm-dot { 0%, 80%, 100% { opacity: .35; transform: none; } 40% { opacity: 1; transform: translateY(-3px); } }
.sources { list-style: none; margin: 8px 0 0; padding: 0; display: flex; flex-wrap: wrap; gap: 6px; max-width: 100%; }
.source {
  display: inline-flex; align-items: center; gap: 6px; max-width: 100%;
  padding: 3px 10px 3px 4px; border-radius: 999px; border: 1px solid var(--line); background: var(--surface);
  font-size: 12px; line-height: 1.35; color: var(--muted);
}
.num {
  flex: none; min-width: 18px; height: 18px; padding: 0 5px; border-radius: 999px;
  display: grid; place-items: center; background: var(--chip); color: var(--chip-text); font-size: 11px; font-weight: 600;
}
.name { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.votes { display: flex; gap: 6px; margin-top: 6px; }
.vote {
  width: 32px; height: 32px; border-radius: 10px; border: 1px solid var(--line); padding: 0;
  display: grid; place-items: center; cursor: pointer; background: var(--surface); color: var(--faint);
}
.vote:hover { color: var(--text); border-color: var(--field-line); }
.vote[aria-pressed="true"] { background: var(--accent); border-color: var(--accent); color: var(--on-accent); }
.vote:disabled { cursor: default; opacity: .6; }
.vote:focus-visible { outline: 3px solid color-mix(in srgb, var(--accent) 45%, transparent); outline-offset: 2px; }
.composer {
  display: flex; align-items: flex-end; gap: 8px; padding: 12px 12px 8px;
  border-top: 1px solid var(--line); background: var(--surface);
}
.input {
  flex: 1; min-width: 0; min-height: 44px; max-height: 128px; margin: 0; resize: none;
  padding: 11px 14px; border: 1px solid var(--field-line); border-radius: 14px; outline: none;
  font: inherit; line-height: 1.4; color: var(--text); background: var(--surface);
}
.input::placeholder { color: var(--faint); opacity: 1; }
.input:focus { border-color: var(--accent); box-shadow: 0 0 0 3px color-mix(in srgb, var(--accent) 22%, transparent); }
.send {
  flex: none; width: 44px; height: 44px; border-radius: 50%; border: 0; padding: 0;
  display: grid; place-items: center; cursor: pointer; background: var(--accent); color: var(--on-accent);
}
.send:disabled { opacity: .4; cursor: default; }
.send:focus-visible { outline: 3px solid color-mix(in srgb, var(--accent) 45%, transparent); outline-offset: 2px; }
.foot { margin: 0; padding: 0 12px 10px; background: var(--surface); font-size: 11px; color: var(--faint); text-align: center; }
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
