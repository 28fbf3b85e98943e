// Live progress for a generation: a bar, the latest message, a short log and the elapsed time.
//
// The server's notifications/progress carry a step counter and a message but usually no
// total, so the bar estimates from the stage the message names ("queued", "running on X",
// "rendering image 2 of 4", "saving", ...) and never moves backwards.
//
// Job ids (the server's, and the vendor's "submitted job 1234-abcd") are kept out of the
// messages a person reads: they go into a collapsed "Job details" <details> under the log.

// "job 1a2b3c4d…", "task 5f6e…", "generation 0123…": a word followed by something that looks like an id (a digit, 6+ characters).
const JOB_ID_RE = /\b(job|task|generation)\s+(?=[\w.:-]*\d)(\w[\w.:-]{4,}\w)/gi;
const SUBMITTED_RE = /\b(submitted|resumed) (?:job|task) (\w[\w.:-]*\w)/i;
const SERVER_JOB_RE = /^[0-9a-f]{32}$/; // this server's own job ids; anything else is the vendor's

function jobKind(id) {
  return SERVER_JOB_RE.test(id) ? "Server job" : "Provider job";
}

/**
 * `message` without job ids, and the ids it named: {text, ids: [{kind, id}]}.
 * "submitted job 1234…" -> "submitted to the provider"; any other "job <id>" -> "job".
 */
export function splitJobIds(message) {
  const ids = [];
  let text = String(message || "").replace(SUBMITTED_RE, (_, verb, id) => {
    ids.push({ kind: jobKind(id), id });
    return verb.toLowerCase() === "submitted" ? "submitted to the provider" : "resumed at the provider";
  });
  text = text.replace(JOB_ID_RE, (_, word, id) => {
    ids.push({ kind: jobKind(id), id });
    return word;
  });
  return { text, ids };
}

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
  constructor({ box, title, time, bar, fill, msg, log, cancel, details = null, ids = null }) {
    Object.assign(this, { box, title, time, bar, fill, msg, log, cancel, details, ids });
    this.timer = null;
    this.percent = 0;
    this.known = new Set();
  }

  /** Note a job id in the collapsed details (never inline); `kind` says whose ("Server job", "Provider job"). */
  addId(kind, id) {
    if (!id || !this.ids || this.known.has(id)) return;
    this.known.add(id);
    const term = document.createElement("dt");
    term.textContent = kind;
    const value = document.createElement("dd");
    const code = document.createElement("code");
    code.textContent = id;
    value.append(code);
    this.ids.append(term, value);
    this.details.hidden = false;
  }

  /** `message` with its job ids moved into the details. */
  clean(message) {
    const { text, ids } = splitJobIds(message);
    for (const { kind, id } of ids) this.addId(kind, id);
    return text;
  }

  /** `failTitle` is the heading a failure gets ("Not generated", "Not edited"). */
  start(label, { failTitle = "Not generated" } = {}) {
    this.failTitle = failTitle || "Not generated";
    this.percent = 2;
    this.started = performance.now();
    this.title.textContent = label;
    this.msg.textContent = "Sending the request…";
    this.log.replaceChildren();
    this.known.clear();
    if (this.ids) this.ids.replaceChildren();
    if (this.details) {
      this.details.open = false;
      this.details.hidden = true;
    }
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
    const message = params.message ? this.clean(params.message) : "";
    this.percent = estimatePercent(this.percent, { ...params, message });
    if (message) {
      this.msg.textContent = message;
      const entry = document.createElement("li");
      const at = document.createElement("span");
      at.className = "log-time";
      at.textContent = `${((performance.now() - this.started) / 1000).toFixed(1)} s`;
      entry.append(at, document.createTextNode(message));
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
    this.msg.textContent = this.clean(message);
    this.title.textContent = error ? this.failTitle || "Not generated" : "Done";
    this.box.classList.toggle("is-error", error);
    this.box.classList.toggle("is-done", !error);
    this.cancel.hidden = true;
  }
}
