// The control panel's few scripts: the menu at phone width and the "Get more tokens" window.
(() => {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const number = new Intl.NumberFormat("en-US");

  // Sign-up: the browser's own time zone, so renewal dates read right.
  document.querySelectorAll("[data-browser-timezone]").forEach((field) => {
    try {
      const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone && field.value === "UTC") field.value = zone;
    } catch (_) { /* keep UTC */ }
  });

  // The phone's menu: the button opens and closes it, Escape closes it and gives the
  // focus back to the button.
  const toggle = document.querySelector("[data-menu-toggle]");
  if (toggle) {
    const sidebar = toggle.closest(".sidebar");
    const showMenu = (open) => {
      sidebar.classList.toggle("is-open", open);
      toggle.setAttribute("aria-expanded", String(open));
    };
    toggle.addEventListener("click", () => showMenu(!sidebar.classList.contains("is-open")));
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || !sidebar.classList.contains("is-open")) return;
      if (document.querySelector("dialog[open]")) return; // Escape closes the dialog first
      showMenu(false);
      toggle.focus();
    });
  }

  // Tables that become cards on a phone keep their roles: some browsers and screen
  // readers drop a table's semantics once CSS changes how its parts display.
  document.querySelectorAll("table.table-stack").forEach((table) => {
    table.setAttribute("role", "table");
    table.querySelectorAll("thead, tbody, tfoot").forEach((group) => group.setAttribute("role", "rowgroup"));
    table.querySelectorAll("tr").forEach((row) => row.setAttribute("role", "row"));
    table.querySelectorAll("thead th").forEach((cell) => cell.setAttribute("role", "columnheader"));
    table.querySelectorAll("tbody th, tfoot th").forEach((cell) => cell.setAttribute("role", "rowheader"));
    table.querySelectorAll("td").forEach((cell) => cell.setAttribute("role", "cell"));
  });

  // A form's error summary takes the focus, so that it is read first; each of its links
  // focuses its field (a group of choices: the first of them).
  const summary = document.querySelector("[data-error-summary]");
  if (summary) {
    summary.focus();
    summary.querySelectorAll("a[data-field]").forEach((link) => link.addEventListener("click", (event) => {
      const name = link.dataset.field;
      const field = document.getElementById(`f-${name}`) || document.querySelector(`[name="${CSS.escape(name)}"]`);
      if (!field) return;
      event.preventDefault();
      field.focus();
      field.scrollIntoView({ block: "center" });
    }));
  }

  // The runway forecast's sentence and the packages it recommends, updated in place.
  function showForecast(forecast) {
    document.querySelectorAll('[data-forecast="summary"]').forEach((node) => { node.textContent = forecast.summary; });
    document.querySelectorAll("[data-forecast-note]").forEach((node) => { node.hidden = !forecast.packages_to_last; });
    const dialog = document.getElementById("tokens-modal");
    if (dialog) dialog.dataset.recommendedPackages = String(forecast.recommended);
  }

  // Every figure on the page that shows the balance, updated in place.
  function showFigures(figures) {
    document.querySelectorAll("[data-figure]").forEach((node) => {
      const value = figures[node.dataset.figure];
      if (value === undefined) return;
      node.textContent = typeof value === "number" ? number.format(value) : value;
    });
    document.querySelectorAll("[data-meter]").forEach((bar) => { bar.style.width = `${figures.percent}%`; });
    document.querySelectorAll("[data-gauge]").forEach((ring) => {
      ring.setAttribute("stroke-dashoffset", String(100 - figures.percent));
      ring.classList.toggle("is-empty", !figures.active);
      ring.classList.toggle("is-low", figures.active && figures.low);
    });
    if (figures.forecast) showForecast(figures.forecast);
    document.querySelectorAll('[data-show-when="inactive"]').forEach((node) => { node.hidden = figures.active; });
    document.querySelectorAll('[data-show-when="low"]').forEach((node) => { node.hidden = !figures.low; });
    // Before its first tokens an account has nothing to measure: "no tokens yet" instead.
    document.querySelectorAll('[data-show-when="had-tokens"]').forEach((node) => { node.hidden = !figures.had_tokens; });
    document.querySelectorAll('[data-show-when="no-tokens-yet"]').forEach((node) => { node.hidden = figures.had_tokens; });
    document.querySelectorAll("[data-assistant-status]").forEach((pill) => {
      const state = figures.active ? "on" : "off";
      pill.classList.remove(pill.dataset.onPill, pill.dataset.offPill);
      pill.classList.add(pill.dataset[`${state}Pill`]);
      pill.textContent = pill.dataset[`${state}Label`];
    });
  }

  // Back from the payment page: ask until the gateway has confirmed, then show the tokens.
  const pending = document.querySelector("[data-pending-invoice]");
  if (pending) {
    const text = pending.querySelector("[data-pending-message]");
    const started = Date.now();
    const ask = async () => {
      let state = null;
      try {
        const response = await fetch(`/panel/billing/invoices/${pending.dataset.pendingInvoice}/state`, { credentials: "same-origin" });
        if (response.ok) state = await response.json();
      } catch (_) { /* asked again below */ }
      if (state && state.status === "paid") {
        showFigures(state.figures);
        pending.classList.replace("alert-warn", "alert-ok");
        text.textContent = `Payment received: ${number.format(state.tokens)} tokens added (invoice ${state.number}).`;
        return;
      }
      if (state && !["pending", "open"].includes(state.status)) {
        text.textContent = `Invoice ${state.number} was not paid${state.failure_reason ? `: ${state.failure_reason}` : ""}.`;
        return;
      }
      // Stripe usually confirms within seconds; after ten minutes, stop asking.
      if (Date.now() - started < 600000) setTimeout(ask, Date.now() - started < 30000 ? 1000 : 5000);
    };
    if (pending.classList.contains("alert-warn")) ask();
  }

  const modal = document.getElementById("tokens-modal");
  if (!modal) return;
  const form = modal.querySelector("[data-tokens-form]");
  const input = modal.querySelector("#packages-input");
  const error = modal.querySelector("[data-tokens-error]");
  const confirm = modal.querySelector("[data-confirm]");
  const chooseStep = modal.querySelector('[data-step="choose"]');
  const doneStep = modal.querySelector('[data-step="done"]');
  const perPackage = Number(modal.dataset.packageTokens);
  const unitCents = Number(modal.dataset.unitCents);
  const taxHundredths = Number(modal.dataset.taxHundredths || 0);
  // What is charged: net + tax, the tax rounded half up to the cent as the invoice does.
  const withTax = (net) => net + Math.floor((net * taxHundredths + 5000) / 10000);
  const prefix = modal.dataset.moneyPrefix;
  const maxPackages = Number(modal.dataset.maxPackages);
  const message = `Enter a whole number of packages from 1 to ${number.format(maxPackages)}.`;
  let key = "";
  let busy = false;
  let opener = null; // the button that opened the window gets the focus back

  const money = (cents) => prefix + (cents / 100).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

  function packages() {
    const text = input.value.trim();
    if (!/^\d{1,7}$/.test(text)) return null;
    const value = Number(text);
    return value >= 1 && value <= maxPackages ? value : null;
  }

  function showError(text) {
    error.textContent = text;
    error.hidden = !text;
    input.setAttribute("aria-invalid", text ? "true" : "false");
  }

  function quote() {
    const count = packages();
    const tokens = count === null ? "—" : number.format(count * perPackage);
    const price = count === null ? "—" : money(withTax(count * unitCents));
    modal.querySelector('[data-quote="tokens"]').textContent = tokens;
    modal.querySelectorAll('[data-quote^="price"]').forEach((node) => { node.textContent = price; });
    showError(count === null ? message : "");
    confirm.disabled = busy;
    return count;
  }

  function newKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function open() {
    opener = document.activeElement;
    key = newKey(); // one purchase per opening: a double click or a retry never buys twice
    busy = false;
    chooseStep.hidden = false;
    doneStep.hidden = true;
    // The forecast's recommendation, only ever pre-filled: buying takes the confirm button.
    input.value = modal.dataset.recommendedPackages || "1";
    quote();
    modal.showModal();
    input.focus();
    input.select();
  }

  document.querySelectorAll("[data-open-tokens]").forEach((button) => button.addEventListener("click", open));
  // The "Get more tokens" link in the low-balance and out-of-tokens emails.
  if (new URLSearchParams(window.location.search).get("buy") === "1") open();
  modal.querySelectorAll("[data-close-modal]").forEach((button) => button.addEventListener("click", () => modal.close()));
  modal.addEventListener("click", (event) => { if (event.target === modal) modal.close(); });
  modal.addEventListener("close", () => {
    if (opener && opener.isConnected) opener.focus();
    opener = null;
  });
  // Tab and Shift+Tab go round the window's own controls, never out to the browser.
  modal.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    const controls = [...modal.querySelectorAll("button, input")].filter((node) => !node.disabled && node.offsetParent !== null);
    if (!controls.length) return;
    const first = controls[0];
    const last = controls[controls.length - 1];
    if (event.shiftKey && document.activeElement === first) { event.preventDefault(); last.focus(); }
    else if (!event.shiftKey && document.activeElement === last) { event.preventDefault(); first.focus(); }
  });
  input.addEventListener("input", quote);
  modal.querySelectorAll("[data-step-by]").forEach((button) => button.addEventListener("click", () => {
    const current = packages() ?? 0;
    const next = Math.min(maxPackages, Math.max(1, current + Number(button.dataset.stepBy)));
    input.value = String(next);
    quote();
  }));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    const count = packages();
    if (count === null) { showError(message); input.focus(); return; }
    busy = true;
    confirm.disabled = true;
    showError("");
    try {
      const response = await fetch("/panel/tokens", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ packages: count, key }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        // Refused or declined: nothing was bought, so the next try is a new purchase.
        // (A lost connection keeps the key: that request may have gone through.)
        key = newKey();
        showError(body?.error?.message || "Something went wrong. Please try again.");
        return;
      }
      if (body.pay_url) {
        // The first card payment is made on the gateway's secure page; it brings the customer back.
        window.location.assign(body.pay_url);
        return;
      }
      showFigures(body.figures);
      modal.querySelector("[data-done-message]").textContent = body.invoice.status === "paid"
        ? `${number.format(body.invoice.tokens)} tokens added. Invoice ${body.invoice.number}, ${body.invoice.amount}.`
        : `Invoice ${body.invoice.number} (${body.invoice.amount}) is waiting for payment. Its ${number.format(body.invoice.tokens)} tokens are added as soon as it is paid.`;
      chooseStep.hidden = true;
      doneStep.hidden = false;
      doneStep.querySelector("[data-close-modal]").focus(); // the button that was pressed is gone
    } catch (_) {
      showError("We could not reach Chatmeter. Check your connection and try again.");
    } finally {
      busy = false;
      confirm.disabled = false;
    }
  });
})();
