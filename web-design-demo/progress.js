// Live progress for a generation: a bar, the latest message, a short log and the elapsed time.
//
// The server's notifications/progress carry a step counter and a message but usually no
// total, so the bar estimates from the stage the message names ("queued", "running on X",
// "rendering image 2 of 4", "saving", ...) and never moves backwards.

export function estimatePercent(previous, { progress, total, message = "" }) {
  if (typeof total === "number" && total > 0 && typeof progress === "number") {
    return Math.max(previous, Math.min(100, (progress / total) * 100));
  }
  const m = message.toLowerCase();
  let value = null;
  const of = m.match(/(\d+)\s*(?:of|\/)\s*(\d+)/);
  if (/succeeded|finished|done/.test(m)) value = 100;
  else if (/saving/.test(m)) value = 92;
  else if (/download/.test(m)) value = 84;
  else if (of && Number(of[2]) > 0) value = 22 + (62 * (Number(of[1]) - 0.5)) / Number(of[2]);
  else if (/running|generating|submitted/.test(m)) value = 18;
  else if (/started/.test(m)) value = 10;
  else if (/queue/.test(m)) value = 5;
  if (value === null) value = previous + (90 - previous) * 0.12; // a heartbeat: creep, never reach the end
  return Math.max(previous, Math.min(100, value));
}

export class ProgressView {
  constructor({ box, title, time, bar, fill, msg, log, cancel }) {
    Object.assign(this, { box, title, time, bar, fill, msg, log, cancel });
    this.timer = null;
    this.percent = 0;
  }

  /** `failTitle` is the heading a failure gets ("Not generated", "Not edited"). */
  start(label, { failTitle = "Not generated" } = {}) {
    this.failTitle = failTitle || "Not generated";
    this.percent = 2;
    this.started = performance.now();
    this.title.textContent = label;
    this.msg.textContent = "Sending the request…";
    this.log.replaceChildren();
    this.box.hidden = false;
    this.box.classList.remove("is-error", "is-done");
    this.cancel.hidden = false;
    this.cancel.disabled = false;
    this.paint();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), 200);
    this.tick();
  }

  tick() {
    this.time.textContent = `${((performance.now() - this.started) / 1000).toFixed(1)} s`;
  }

  paint() {
    this.fill.style.width = `${this.percent.toFixed(1)}%`;
    this.bar.setAttribute("aria-valuenow", String(Math.round(this.percent)));
  }

  update(params) {
    this.percent = estimatePercent(this.percent, params);
    if (params.message) {
      this.msg.textContent = params.message;
      const entry = document.createElement("li");
      const at = document.createElement("span");
      at.className = "log-time";
      at.textContent = `${((performance.now() - this.started) / 1000).toFixed(1)} s`;
      entry.append(at, document.createTextNode(params.message));
      this.log.append(entry);
      while (this.log.children.length > 6) this.log.firstElementChild.remove();
    }
    this.paint();
  }

  note(message) {
    this.update({ message });
  }

  finish(message, { error = false } = {}) {
    clearInterval(this.timer);
    this.tick();
    if (!error) this.percent = 100;
    this.paint();
    this.msg.textContent = message;
    this.title.textContent = error ? this.failTitle || "Not generated" : "Done";
    this.box.classList.toggle("is-error", error);
    this.box.classList.toggle("is-done", !error);
    this.cancel.hidden = true;
  }
}
