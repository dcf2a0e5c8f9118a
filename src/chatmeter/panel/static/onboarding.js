// The dashboard after tokens are bought in the "Get more tokens" window (panel.js shows
// the new figures, the balance's cards in place of "no tokens yet"): the welcome
// checklist ticks "Get tokens", as the server would draw it now. When that was
// the last step, closing the window reloads the page for the server's "You're live".
(() => {
  const modal = document.getElementById("tokens-modal");
  const done = modal && modal.querySelector('[data-step="done"]');
  if (!modal || !done) return;
  let finished = false;

  function bought() {
    const step = document.querySelector('[data-step-key="tokens"]');
    if (!step || step.dataset.done === "yes") return;
    step.dataset.done = "yes";
    step.classList.remove("is-next");
    step.classList.add("is-done");
    step.querySelectorAll(".step-help, .step-action").forEach((node) => node.remove());
    const state = step.querySelector(".step-title .visually-hidden");
    if (state) state.textContent = " (done)";
    const mark = step.querySelector(".step-mark");
    if (mark) mark.textContent = "✓";
    const steps = document.querySelectorAll("[data-step-key]").length;
    const left = document.querySelectorAll('[data-step-key][data-done="no"]').length;
    const count = document.querySelector('[data-testid="onboarding-count"]');
    if (count) count.textContent = `${steps - left} of ${steps} done`;
    const meter = document.querySelector(".onboarding-meter span");
    if (meter) meter.style.width = `${Math.floor(((steps - left) * 100) / steps)}%`;
    finished = left === 0;
  }

  new MutationObserver(() => { if (!done.hidden) bought(); })
    .observe(done, { attributes: true, attributeFilter: ["hidden"] });
  modal.addEventListener("close", () => { if (finished) window.location.reload(); });
})();
