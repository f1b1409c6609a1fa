// workbench widgets' front end (generic, shipped inside the package, so it works offline).
//
// Python renders every piece of HTML (escaped there) into two synced traits:
// `layout`, a skeleton with <div data-wb-slot="NAME"> holes, and `parts`, the
// HTML of each slot. This module only draws them and reports what the person
// does, as messages to the kernel:
//   {type: "click", action, arg}   a click on an element with data-wb-action
//   {type: "input", name, value}   typing in a box with data-wb-input
//   {type: "enter", name, value}   Enter in such a box
//   {type: "change", name, value}  a select or checkbox with data-wb-input changed
//   {type: "key", key}             a single key listed in `hotkeys`, focus anywhere
//                                  in the widget except a text box
// Keys never reach JupyterLab's notebook shortcuts while focus is inside the
// widget (`a`, `b` and `x` would insert and cut cells in command mode).

const TEXT_BOX = "input[type=text], input[type=search], input:not([type]), textarea";

function isTextBox(node) {
  return node instanceof Element && node.matches(TEXT_BOX);
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "wb-view";
  root.tabIndex = 0;
  // Lumino skips its keyboard shortcuts for events from inside such an element.
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  el.appendChild(root);
  let drawn = {};

  function slot(name) {
    return root.querySelector(`[data-wb-slot="${CSS.escape(name)}"]`);
  }

  // What focus, typed text and scroll positions a redraw of `node` must keep.
  function remember(node) {
    const active = document.activeElement;
    const state = { focus: null, scrolls: [] };
    if (active && node.contains(active)) {
      const name = active.getAttribute("data-wb-input") || active.getAttribute("data-wb-focus");
      state.focus = { name, isText: isTextBox(active), value: active.value,
                      start: active.selectionStart, end: active.selectionEnd };
    }
    node.querySelectorAll("[data-wb-scroll]").forEach((e) => {
      state.scrolls.push([e.getAttribute("data-wb-scroll"), e.scrollTop, e.scrollLeft]);
    });
    return state;
  }

  function restore(node, state) {
    for (const [name, top, left] of state.scrolls) {
      const e = node.querySelector(`[data-wb-scroll="${CSS.escape(name)}"]`);
      if (e && !e.hasAttribute("data-wb-scroll-reset")) { e.scrollTop = top; e.scrollLeft = left; }
    }
    if (!state.focus) return;
    let target = null;
    if (state.focus.name) {
      target = node.querySelector(`[data-wb-input="${CSS.escape(state.focus.name)}"], [data-wb-focus="${CSS.escape(state.focus.name)}"]`);
    }
    if (target && state.focus.isText) {
      // What the person is typing wins over the kernel's echo of an earlier keystroke.
      target.value = state.focus.value;
      try { target.setSelectionRange(state.focus.start, state.focus.end); } catch (e) { /* not a text box */ }
    }
    (target || root).focus({ preventScroll: true });
  }

  function drawPart(name, html) {
    const node = slot(name);
    if (!node) return;
    const state = remember(node);
    node.innerHTML = html;
    drawn[name] = html;
    restore(node, state);
  }

  function drawLayout() {
    const state = remember(root);
    root.innerHTML = model.get("shell");
    drawn = {};
    drawParts();
    if (state.focus) root.focus({ preventScroll: true });
  }

  function drawParts() {
    const parts = model.get("parts") || {};
    for (const [name, html] of Object.entries(parts)) {
      if (drawn[name] !== html) drawPart(name, html);
    }
    // The kernel may ask to bring an element into view (the selected row or cell).
    const reveal = root.querySelector("[data-wb-reveal]");
    if (reveal && reveal.getAttribute("data-wb-reveal") !== root.getAttribute("data-wb-revealed")) {
      root.setAttribute("data-wb-revealed", reveal.getAttribute("data-wb-reveal"));
      reveal.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  }

  function send(message) {
    model.send(message);
  }

  root.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target.closest("[data-wb-action]") : null;
    if (!target || !root.contains(target) || target.hasAttribute("disabled")) return;
    event.preventDefault();
    send({ type: "click", action: target.getAttribute("data-wb-action"), arg: target.getAttribute("data-wb-arg") });
  });

  root.addEventListener("input", (event) => {
    const target = event.target;
    if (!(target instanceof Element) || !target.hasAttribute("data-wb-input") || !isTextBox(target)) return;
    send({ type: "input", name: target.getAttribute("data-wb-input"), value: target.value });
  });

  root.addEventListener("change", (event) => {
    const target = event.target;
    if (!(target instanceof Element) || !target.hasAttribute("data-wb-input") || isTextBox(target)) return;
    const value = target.type === "checkbox" ? target.checked : target.value;
    send({ type: "change", name: target.getAttribute("data-wb-input"), value });
  });

  root.addEventListener("keydown", (event) => {
    // Inside the widget every key is ours: none may run a notebook command.
    event.stopPropagation();
    const target = event.target;
    if (isTextBox(target)) {
      if (event.key === "Enter" && !event.shiftKey && target.tagName !== "TEXTAREA" && target.hasAttribute("data-wb-input")) {
        event.preventDefault();
        send({ type: "enter", name: target.getAttribute("data-wb-input"), value: target.value });
      } else if (event.key === "Escape") {
        root.focus({ preventScroll: true });
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target instanceof Element && target.matches("select") && event.key.startsWith("Arrow")) return;
    const keys = model.get("hotkeys") || [];
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (keys.includes(key)) {
      event.preventDefault();
      send({ type: "key", key });
    }
  });

  // Clicking plain text in the widget gives it focus, so single keys work at once.
  root.addEventListener("mousedown", (event) => {
    const target = event.target;
    if (target instanceof Element && !target.closest("input, textarea, select, button, a, [tabindex]:not(.wb-view)")) {
      setTimeout(() => { if (!root.contains(document.activeElement) || document.activeElement === document.body) root.focus({ preventScroll: true }); }, 0);
    }
  });

  model.on("change:shell", drawLayout);
  model.on("change:parts", drawParts);
  drawLayout();
  return () => { model.off("change:shell", drawLayout); model.off("change:parts", drawParts); };
}

export default { render };
