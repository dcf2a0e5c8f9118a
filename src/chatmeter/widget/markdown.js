/*
 * Chatmeter's Markdown: an answer's text drawn as DOM nodes from a small allow-list,
 * never as parsed HTML. Anything that is not one of these constructs stays text:
 *
 *   paragraphs and line breaks          <p>, <br>
 *   **bold**, *italic* or _italic_      <strong>, <em>
 *   `inline code`, ``` fenced blocks    <code>, <pre><code>
 *   - bullets, 1. numbered lists        <ul>/<ol start>, <li>
 *   # headings                          <p><strong> (an answer has no document outline)
 *   [text](url) and bare URLs           <a href rel target> for http:, https:, mailto: only
 *
 * Served inside widget.js, and on its own at /widget/markdown.js, where it is
 * window.ChatmeterMarkdown.render(text, document) -> DocumentFragment. Cheap enough
 * to redraw a streaming answer from its whole text on every delta.
 */
const ChatmeterMarkdown = (() => {
  const LINK_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
  const LINK_REL = "noopener noreferrer nofollow";
  const MAX_NESTING = 6; // emphasis inside emphasis; deeper is shown as typed
  const FENCE = /^ {0,3}(`{3,}|~{3,})/;
  const HEADING = /^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
  const BULLET = /^[ \t]*[-*+][ \t]+(.*)$/;
  const NUMBERED = /^[ \t]*(\d{1,9})[.)][ \t]+(.*)$/;
  const BLANK = /^[ \t]*$/;
  const INDENTED = /^[ \t]+\S/;
  const ESCAPABLE = /[!-/:-@[-`{-~]/;
  // Sticky (y): matched at one position of the text, which is never copied.
  const LINK = /\[([^[\]\n]*)\]\(\s*<?([^\s()<>]+)>?\s*\)/y;
  const BARE_URL = /(?:https?:\/\/|mailto:)[^\s<>"'`]+/iy;
  const TICKS = /`+/y;
  const WORD = /[\p{L}\p{N}]/u;
  const SPACE = /\s/;

  // The URL as the link's href when it is an absolute http:, https: or mailto: one;
  // anything else (javascript:, data:, relative, unparsable) is no link at all.
  const safeHref = (raw) => {
    try {
      const url = new URL(raw);
      return LINK_PROTOCOLS.has(url.protocol) ? url.href : null;
    } catch {
      return null;
    }
  };

  const matchAt = (pattern, src, at) => {
    pattern.lastIndex = at;
    return pattern.exec(src);
  };

  // Where the emphasis opened at `from` with `marker` ("*", "_", "**", "__") closes, or -1.
  const closing = (src, from, marker) => {
    const c = marker[0];
    for (let j = from + 1; j <= src.length - marker.length; j += 1) {
      if (src[j] === "`") {
        const run = matchAt(TICKS, src, j)[0];
        const end = src.indexOf(run, j + run.length);
        if (end > 0) j = end + run.length - 1; // emphasis does not close inside code
        continue;
      }
      if (!src.startsWith(marker, j) || SPACE.test(src[j - 1])) continue;
      const next = src[j + marker.length] || "";
      if (marker.length === 1 && (next === c || src[j - 1] === c)) {
        j += 1; // part of a double marker: skip it
        continue;
      }
      if (c === "_" && WORD.test(next)) continue; // snake_case is not emphasis
      // In "***" after "**bold *italic", the bold closes with the run's last two.
      while (marker.length === 2 && src[j + 2] === c) j += 1;
      return j;
    }
    return -1;
  };

  const render = (text, doc = document) => {
    const element = (tag, children = []) => {
      const node = doc.createElement(tag);
      node.append(...children);
      return node;
    };

    // Text with its line breaks as <br>.
    const textNodes = (value) => {
      const nodes = [];
      value.split("\n").forEach((line, i) => {
        if (i) nodes.push(element("br"));
        if (line) nodes.push(doc.createTextNode(line));
      });
      return nodes;
    };

    const link = (label, href) => {
      const a = element("a", label);
      a.setAttribute("href", href);
      a.setAttribute("rel", LINK_REL);
      a.setAttribute("target", "_blank");
      return a;
    };

    const inline = (src, depth, links) => {
      const nodes = [];
      let pending = "";
      // Where a marker was last found never to close: it closes after no later position
      // either, so a text full of lone "*" or "`" is read once, not once per marker.
      const unclosed = {};
      const emit = (node) => {
        nodes.push(...textNodes(pending), node);
        pending = "";
      };
      let i = 0;
      while (i < src.length) {
        const c = src[i];
        if (c === "\\" && ESCAPABLE.test(src[i + 1] || "")) {
          pending += src[i + 1];
          i += 2;
          continue;
        }
        if (c === "`") {
          const run = matchAt(TICKS, src, i)[0];
          const end = i >= unclosed[run] ? -1 : src.indexOf(run, i + run.length);
          if (end < 0) unclosed[run] = i;
          if (end > 0) {
            const code = element("code");
            code.textContent = src.slice(i + run.length, end).replace(/\n/g, " ");
            emit(code);
            i = end + run.length;
          } else {
            pending += run;
            i += run.length;
          }
          continue;
        }
        if (links && c === "[") {
          const found = matchAt(LINK, src, i);
          const href = found && safeHref(found[2]);
          if (href) {
            emit(link(inline(found[1], depth + 1, false), href));
            i += found[0].length;
            continue;
          }
        }
        if (links && (c === "h" || c === "H" || c === "m" || c === "M") && !WORD.test(src[i - 1] || "")) {
          const found = matchAt(BARE_URL, src, i);
          // Sentence punctuation after a URL is the sentence's, not the URL's.
          const url = found && found[0].replace(/[.,;:!?)\]]+$/, "");
          const href = url && safeHref(url);
          if (href && url.length > 8) {
            emit(link([doc.createTextNode(url)], href));
            i += url.length;
            continue;
          }
        }
        if (c === "*" || c === "_") {
          const marker = src[i + 1] === c ? c + c : c;
          const after = src[i + marker.length] || "";
          const before = src[i - 1] || "";
          const opens = after && !SPACE.test(after) && !(c === "_" && WORD.test(before));
          let end = -1;
          if (opens && depth < MAX_NESTING && !(i >= unclosed[marker])) {
            end = closing(src, i + marker.length - 1, marker);
            if (end < 0) unclosed[marker] = i;
          }
          if (end > i + marker.length) {
            const inner = inline(src.slice(i + marker.length, end), depth + 1, links);
            emit(element(marker.length === 2 ? "strong" : "em", inner));
            i = end + marker.length;
          } else {
            pending += marker;
            i += marker.length;
          }
          continue;
        }
        pending += c;
        i += 1;
      }
      nodes.push(...textNodes(pending));
      return nodes;
    };

    const out = doc.createDocumentFragment();
    const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
    let paragraph = null; // the lines of the paragraph being read
    let list = null; // { node, ordered, item }
    let gap = false; // a blank line since the last list item

    const endParagraph = () => {
      if (paragraph) out.append(element("p", inline(paragraph.join("\n"), 0, true)));
      paragraph = null;
    };
    const endList = () => {
      list = null;
      gap = false;
    };

    for (let n = 0; n < lines.length; n += 1) {
      const line = lines[n];
      const fence = FENCE.exec(line);
      if (fence) {
        endParagraph();
        endList();
        const body = [];
        for (n += 1; n < lines.length; n += 1) {
          const trimmed = lines[n].trim();
          if (trimmed.startsWith(fence[1]) && /^[`~]+$/.test(trimmed)) break;
          body.push(lines[n]);
        }
        const code = element("code");
        code.textContent = body.join("\n");
        out.append(element("pre", [code]));
        continue;
      }
      if (BLANK.test(line)) {
        endParagraph();
        if (list) gap = true;
        continue;
      }
      const heading = HEADING.exec(line);
      if (heading && heading[1]) {
        endParagraph();
        endList();
        out.append(element("p", [element("strong", inline(heading[1] || "", 1, true))]));
        continue;
      }
      const numbered = NUMBERED.exec(line);
      const bullet = numbered ? null : BULLET.exec(line);
      if (numbered || bullet) {
        endParagraph();
        const ordered = Boolean(numbered);
        if (!list || list.ordered !== ordered) {
          const node = element(ordered ? "ol" : "ul");
          if (ordered && numbered[1] !== "1") node.setAttribute("start", String(Number(numbered[1])));
          out.append(node);
          list = { node, ordered, item: null };
        }
        gap = false;
        list.item = element("li", inline(numbered ? numbered[2] : bullet[1], 0, true));
        list.node.append(list.item);
        continue;
      }
      if (list && (!gap || INDENTED.test(line))) {
        // The item's text goes on over more than one line.
        list.item.append(element("br"), ...inline(line.trim(), 0, true));
        gap = false;
        continue;
      }
      endList();
      (paragraph ||= []).push(line);
    }
    endParagraph();
    return out;
  };

  return Object.freeze({ render });
})();
