// The assistant settings page: redraws the chat window's preview as the form changes.
// Every text goes in with textContent, never as HTML. The text colour on the brand colour
// is white or black, whichever contrasts more (WCAG relative luminance), as the widget
// (widget.js) and panel/contrast.py choose it for the page's first drawing.
(() => {
  const preview = document.querySelector("[data-preview]");
  const form = document.querySelector(".settings-form");
  if (!preview || !form) return;
  const COLOUR = /^#[0-9a-fA-F]{6}$/;

  function luminance(hex) {
    const channel = (i) => {
      const value = parseInt(hex.slice(i, i + 2), 16) / 255;
      return value <= 0.04045 ? value / 12.92 : ((value + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
  }
  // Black or white, as the widget itself chooses (at least 4.58:1 on any colour).
  function textOn(colour) {
    const light = luminance(colour);
    return 1.05 / (light + 0.05) >= (light + 0.05) / 0.05 ? "#ffffff" : "#000000";
  }

  const field = (name) => form.elements.namedItem(name);
  const value = (name) => {
    const found = field(name);
    return found && typeof found.value === "string" ? found.value.trim() : "";
  };
  // A text the customer left empty shows the widget's own words (the placeholder).
  const text = (key) => {
    const input = field(`text_${key}`);
    return (input && (input.value.trim() || input.placeholder)) || "";
  };
  const show = (selector, words) => {
    const node = preview.querySelector(selector);
    if (node) node.textContent = words;
    return node;
  };

  function draw() {
    show("[data-preview-title]", value("widget_title") || value("name"));
    show("[data-preview-subtitle]", text("subtitle"));
    show("[data-preview-placeholder]", text("placeholder"));
    show("[data-preview-footer]", text("powered_by"));
    const welcome = show("[data-preview-welcome]", value("welcome_message"));
    if (welcome) welcome.hidden = !value("welcome_message");
    const colour = value("widget_color");
    if (COLOUR.test(colour)) {
      preview.style.setProperty("--wp-brand", colour);
      preview.style.setProperty("--wp-on-brand", textOn(colour));
    }
    const theme = value("widget_theme") || "auto";
    preview.dataset.theme = theme;
    preview.dataset.position = value("widget_position") === "left" ? "left" : "right";
    const note = document.querySelector("[data-preview-theme-note]");
    if (note) note.hidden = theme !== "auto";
  }

  form.addEventListener("input", draw);
  form.addEventListener("change", draw);
})();
