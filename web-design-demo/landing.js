// The landing page being designed: its model, a live preview with image slots, and an HTML export.

export const SLOTS = [
  { id: "hero", label: "Hero", resolution: "1280x720", hint: "Wide banner behind the headline" },
  { id: "feature-1", label: "Feature 1", resolution: "1024x768", hint: "First feature card" },
  { id: "feature-2", label: "Feature 2", resolution: "1024x768", hint: "Second feature card" },
  { id: "feature-3", label: "Feature 3", resolution: "1024x768", hint: "Third feature card" },
];

export function slotLabel(id) {
  return SLOTS.find((s) => s.id === id)?.label || id;
}

export function defaultPage() {
  return {
    brand: "Northwind",
    headline: "Trips that feel like a postcard",
    subheadline: "Hand-picked routes, quiet places and sunsets worth the detour. Plan your next escape in minutes.",
    cta: "Plan my trip",
    sectionTitle: "Why travellers choose Northwind",
    features: [
      { title: "Mountain mornings", body: "Cabins above the clouds with trails starting at the door." },
      { title: "Coastal evenings", body: "Sea-view stays, quiet coves and the best seat for sunset." },
      { title: "City lights", body: "Walkable neighbourhoods, late dinners and rooftop views." },
    ],
    accent: "#4f46e5",
    slots: { hero: null, "feature-1": null, "feature-2": null, "feature-3": null },
  };
}

/** Merge a stored page over the defaults (older or partial saves stay usable). */
export function restorePage(saved) {
  const page = defaultPage();
  if (!saved || typeof saved !== "object") return page;
  for (const key of ["brand", "headline", "subheadline", "cta", "sectionTitle", "accent"]) {
    if (typeof saved[key] === "string") page[key] = saved[key];
  }
  if (Array.isArray(saved.features)) {
    saved.features.slice(0, 3).forEach((f, i) => {
      if (f && typeof f.title === "string") page.features[i].title = f.title;
      if (f && typeof f.body === "string") page.features[i].body = f.body;
    });
  }
  if (saved.slots && typeof saved.slots === "object") {
    for (const slot of SLOTS) {
      const item = saved.slots[slot.id];
      if (item && typeof item === "object" && typeof item.id === "string") page.slots[slot.id] = item;
    }
  }
  return page;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function imageSource(item) {
  return item ? item.url || item.thumbnail || "" : "";
}

/**
 * The live preview. `onEdit(path, value)` fires as text is edited; `onSlot(action, slotId)`
 * for the slot buttons ("generate" | "clear").
 */
export class LandingPreview {
  constructor(root, { onEdit, onSlot }) {
    this.root = root;
    this.onEdit = onEdit;
    this.onSlot = onSlot;
    this.slotNodes = new Map();
    this.textNodes = [];
  }

  editable(tag, className, path, value, label) {
    const node = el(tag, className, value);
    node.contentEditable = "plaintext-only";
    node.spellcheck = false;
    node.setAttribute("role", "textbox");
    node.setAttribute("aria-label", label);
    node.dataset.path = path;
    node.addEventListener("input", () => this.onEdit(path, node.textContent));
    node.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        node.blur();
      }
    });
    this.textNodes.push(node);
    return node;
  }

  slot(slotId, className) {
    const box = el("div", `lp-slot ${className}`);
    box.dataset.slot = slotId;
    const img = el("img", "lp-img");
    img.alt = "";
    img.hidden = true;
    const empty = el("div", "lp-empty");
    const label = SLOTS.find((s) => s.id === slotId);
    empty.append(el("span", "lp-empty-title", `${label.label} image`), el("span", "lp-empty-hint", label.hint));
    const tools = el("div", "lp-tools");
    const gen = el("button", "lp-tool", "Generate");
    gen.type = "button";
    gen.dataset.slotAction = "generate";
    gen.setAttribute("aria-label", `Generate an image for ${label.label}`);
    gen.addEventListener("click", () => this.onSlot("generate", slotId));
    const clear = el("button", "lp-tool", "Clear");
    clear.type = "button";
    clear.dataset.slotAction = "clear";
    clear.setAttribute("aria-label", `Clear the ${label.label} image`);
    clear.addEventListener("click", () => this.onSlot("clear", slotId));
    tools.append(gen, clear);
    img.addEventListener("error", () => {
      img.hidden = true;
      empty.hidden = false;
      empty.querySelector(".lp-empty-hint").textContent = "This image is no longer on the server";
    });
    box.append(img, empty, tools);
    this.slotNodes.set(slotId, { box, img, empty, clear });
    return box;
  }

  build(page) {
    this.textNodes = [];
    const lp = el("div", "lp");
    const nav = el("header", "lp-nav");
    const logo = el("span", "lp-logo");
    logo.setAttribute("aria-hidden", "true");
    const brand = el("div", "lp-brand");
    brand.append(logo, this.editable("span", "lp-brand-name", "brand", page.brand, "Brand name"));
    const links = el("nav", "lp-links");
    links.setAttribute("aria-label", "Preview navigation");
    for (const name of ["Features", "Pricing", "Contact"]) links.append(el("span", "lp-link", name));
    nav.append(brand, links, el("span", "lp-nav-cta", "Sign in"));

    const hero = this.slot("hero", "lp-hero");
    const copy = el("div", "lp-hero-copy");
    const actions = el("div", "lp-hero-actions");
    actions.append(this.editable("span", "lp-cta", "cta", page.cta, "Call to action"), el("span", "lp-ghost", "Learn more"));
    copy.append(
      this.editable("h3", "lp-headline", "headline", page.headline, "Headline"),
      this.editable("p", "lp-sub", "subheadline", page.subheadline, "Subheadline"),
      actions,
    );
    hero.insertBefore(copy, hero.querySelector(".lp-tools"));

    const features = el("section", "lp-features");
    const grid = el("div", "lp-grid");
    page.features.forEach((f, i) => {
      const card = el("article", "lp-card");
      card.append(
        this.slot(`feature-${i + 1}`, "lp-media"),
        this.editable("h4", "lp-card-title", `features.${i}.title`, f.title, `Feature ${i + 1} title`),
        this.editable("p", "lp-card-body", `features.${i}.body`, f.body, `Feature ${i + 1} text`),
      );
      grid.append(card);
    });
    features.append(this.editable("h3", "lp-section-title", "sectionTitle", page.sectionTitle, "Section title"), grid);

    const footer = el("footer", "lp-footer");
    footer.append(el("span", "", "© 2026 "), el("span", "lp-footer-brand", page.brand));
    lp.append(nav, hero, features, footer);
    this.root.replaceChildren(lp);
    this.lp = lp;
    this.update(page);
  }

  /** Apply images, accent and footer brand without touching text being edited. */
  update(page) {
    this.lp.style.setProperty("--lp-accent", page.accent);
    this.lp.querySelector(".lp-footer-brand").textContent = page.brand;
    for (const slot of SLOTS) {
      const nodes = this.slotNodes.get(slot.id);
      const item = page.slots[slot.id];
      const src = imageSource(item);
      nodes.box.classList.toggle("lp-filled", Boolean(src));
      nodes.clear.hidden = !src;
      if (src) {
        if (nodes.img.getAttribute("src") !== src) {
          nodes.img.src = src;
          nodes.empty.querySelector(".lp-empty-hint").textContent = slot.hint;
        }
        nodes.img.alt = item.prompt || `${slot.label} image`;
        nodes.img.hidden = false;
        nodes.empty.hidden = true;
      } else {
        nodes.img.removeAttribute("src");
        nodes.img.hidden = true;
        nodes.empty.hidden = false;
      }
    }
  }

  flash(slotId) {
    const nodes = this.slotNodes.get(slotId);
    if (!nodes) return;
    nodes.box.classList.remove("lp-flash");
    void nodes.box.offsetWidth; // restart the animation
    nodes.box.classList.add("lp-flash");
  }
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

/** A standalone HTML file of the page (styles inlined, images by URL). */
export function exportHtml(page, css) {
  const img = (slotId, cls) => {
    const item = page.slots[slotId];
    const src = imageSource(item);
    return src
      ? `<img class="lp-img ${cls}" src="${escapeHtml(src)}" alt="${escapeHtml(item.prompt || "")}">`
      : "";
  };
  const accent = /^#[0-9a-f]{6}$/i.test(page.accent) ? page.accent : "#4f46e5";
  const features = page.features
    .map(
      (f, i) => `      <article class="lp-card">
        <div class="lp-slot lp-media${page.slots[`feature-${i + 1}`] ? " lp-filled" : ""}">${img(`feature-${i + 1}`, "")}</div>
        <h4 class="lp-card-title">${escapeHtml(f.title)}</h4>
        <p class="lp-card-body">${escapeHtml(f.body)}</p>
      </article>`,
    )
    .join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(page.brand)} · ${escapeHtml(page.headline)}</title>
<style>
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.landing-root { container-type: inline-size; }
.lp-tools, .lp-empty { display: none !important; }
${css}
</style>
</head>
<body>
<div class="landing-root">
  <div class="lp" style="--lp-accent: ${accent}">
    <header class="lp-nav">
      <div class="lp-brand"><span class="lp-logo"></span><span class="lp-brand-name">${escapeHtml(page.brand)}</span></div>
      <nav class="lp-links"><span class="lp-link">Features</span><span class="lp-link">Pricing</span><span class="lp-link">Contact</span></nav>
      <span class="lp-nav-cta">Sign in</span>
    </header>
    <div class="lp-slot lp-hero${page.slots.hero ? " lp-filled" : ""}">
      ${img("hero", "")}
      <div class="lp-hero-copy">
        <h1 class="lp-headline">${escapeHtml(page.headline)}</h1>
        <p class="lp-sub">${escapeHtml(page.subheadline)}</p>
        <div class="lp-hero-actions"><a class="lp-cta" href="#">${escapeHtml(page.cta)}</a><span class="lp-ghost">Learn more</span></div>
      </div>
    </div>
    <section class="lp-features">
      <h2 class="lp-section-title">${escapeHtml(page.sectionTitle)}</h2>
      <div class="lp-grid">
${features}
      </div>
    </section>
    <footer class="lp-footer">© 2026 ${escapeHtml(page.brand)}</footer>
  </div>
</div>
</body>
</html>
`;
}
