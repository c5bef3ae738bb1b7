// The page: a form to start a report, the report filling in live, and the recent reports.
// A job's view lives at ?job=<jobId>, so it can be shared and survives a reload: the page
// re-reads the job, then follows its event stream, which replays the steps already done.

import { api, currentToken, PAGE_SIZE, useToken } from "./api.js";
import { serverSentEvents } from "./events.js";
import { showMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const FINAL = new Set(["completed", "failed", "cancelled"]);
const FIELDS = ["topic", "sections", "detail", "language", "model"];
const FIELD_BY_CODE = {
  invalid_topic: "topic",
  invalid_sections: "sections",
  invalid_language: "language",
  invalid_model: "model",
};
const LABELS = { topic: "Topic", sections: "Sections", detail: "Detail", language: "Language", model: "Model" };
const POLL_MS = 2000;
const PAGE_TITLE = "Reports · reportsvc";

let options = null; // what the form offers (GET ui/options)
let view = null; // the job shown: { id, topic, job, controller, items, refreshing, again }
const recent = { jobs: [], next: null, timer: null, seq: 0 };

// --- words -------------------------------------------------------------------------------

/** `text` ending with a full stop, for the end of a message: "... refused: <clause>" */
function clause(text) {
  const trimmed = String(text).trim();
  return !trimmed || /[.!?…]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

/** `text` as a sentence of its own: a capital first, a full stop last. */
function sentence(text) {
  const trimmed = clause(text);
  return trimmed && trimmed[0].toUpperCase() + trimmed.slice(1);
}

// msgspec's phrases, as the API relays them for a field of the wrong type or size.
const PHRASES = [
  [/^Expected int, got \w+$/, () => "must be a whole number"],
  [/^Expected str of length <= (\d+)$/, (n) => `must be at most ${n} characters long`],
];

function fieldMessage(field, message) {
  // The schema's bounds for sections (1 to 20) are wider than this server's MAX_SECTIONS.
  if (field === "sections" && /^Expected int [<>]= \d+$/.test(message)) {
    return `Sections must be from 1 to ${options.maxSections}.`;
  }
  for (const [pattern, say] of PHRASES) {
    const match = pattern.exec(message);
    if (match) return sentence(`${LABELS[field]} ${say(match[1])}`);
  }
  return sentence(message);
}

function describe(error) {
  if (error.status === 429 || error.status === 503) {
    const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : " Try again shortly.";
    return sentence(error.message) + wait;
  }
  return sentence(error.message);
}

function clock(iso) {
  return new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function fileName(topic) {
  const slug = (topic || "")
    .normalize("NFKD")
    .replace(/[^\w\s-]/g, "")
    .trim()
    .replace(/[\s_]+/g, "-")
    .toLowerCase()
    .slice(0, 60);
  return `${slug || "report"}.md`;
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });

// --- fields and messages -------------------------------------------------------------------

function showFieldError(field, message) {
  const error = $(`${field}-error`);
  error.textContent = message;
  error.hidden = false;
  $(field).setAttribute("aria-invalid", "true");
}

function clearFieldError(field) {
  const error = $(`${field}-error`);
  error.textContent = "";
  error.hidden = true;
  $(field).removeAttribute("aria-invalid");
}

function showNotice(id, message) {
  $(id).textContent = message;
  $(id).hidden = !message;
}

function say(message) {
  $("action-status").textContent = message;
}

// --- the locked door ----------------------------------------------------------------------

/** Ask for a token: none was given, or the API refused the one the page had. */
function lock(error) {
  // A request sent with a token since replaced (answered after the switch) says nothing
  // about the token in use now.
  if (error.token !== undefined && error.token !== currentToken()) return;
  const refused = currentToken() !== null;
  stopEverything();
  useToken(null);
  $("app").hidden = true;
  $("session").hidden = true;
  $("token-view").hidden = false;
  clearFieldError("token");
  if (refused) showFieldError("token", `The saved token was refused: ${clause(error.message)} Enter another one.`);
  $("token").focus();
}

async function submitToken(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  clearFieldError("token");
  if (!token) {
    showFieldError("token", "Enter the API token you were given.");
    $("token").focus();
    return;
  }
  try {
    options = await api.options(token);
  } catch (error) {
    const why = error.status === 401 ? "That token was refused" : "The token could not be checked";
    showFieldError("token", `${why}: ${clause(error.message)}`);
    $("token").focus();
    return;
  }
  useToken(token);
  $("token").value = "";
  $("token-view").hidden = true;
  showApp();
  route({ focus: false });
  $("topic").focus();
}

function forgetToken() {
  useToken(null);
  stopEverything();
  history.pushState(null, "", "./");
  start();
}

// --- start and routing -----------------------------------------------------------------------

async function start() {
  showNotice("page-error", "");
  try {
    options = await api.options();
  } catch (error) {
    if (error.status === 401) {
      lock(error);
      return;
    }
    showNotice("page-error", `The page could not start: ${clause(error.message)} Reload to try again.`);
    return;
  }
  showApp();
  route({ focus: false });
}

function showApp() {
  $("app").hidden = false;
  $("session").hidden = currentToken() === null;
  const sections = $("sections");
  sections.max = String(options.maxSections);
  sections.placeholder = String(options.defaultSections);
  $("sections-hint").textContent =
    `1 to ${options.maxSections}; empty for the default, ${options.defaultSections}.`;
  const model = $("model");
  model.replaceChildren(...options.models.map((name) => new Option(name, name, false, name === options.defaultModel)));
  $("model-field").hidden = options.models.length < 2;
}

function route({ focus }) {
  const id = new URLSearchParams(location.search).get("job");
  if (id) openJob(id, { focus });
  else closeJob();
  refreshRecent();
}

function navigate(id, { focus = true } = {}) {
  history.pushState(null, "", id ? `?job=${encodeURIComponent(id)}` : "./");
  route({ focus });
}

function stopEverything() {
  closeJob();
  clearTimeout(recent.timer);
  recent.seq += 1;
  recent.jobs = [];
  recent.next = null;
  $("recent-list").replaceChildren();
  $("recent-more").hidden = true;
  $("recent-empty").hidden = true;
}

// --- starting a report ------------------------------------------------------------------------

async function submitReport(event) {
  event.preventDefault();
  for (const field of FIELDS) clearFieldError(field);
  showNotice("form-error", "");
  const body = { topic: $("topic").value, detail: $("detail").value };
  const sections = $("sections");
  if (sections.validity.badInput) {
    showFieldError("sections", "Sections must be a whole number.");
    sections.focus();
    return;
  }
  if (sections.value.trim() !== "") body.sections = Number(sections.value);
  const language = $("language").value.trim();
  if (language) body.language = language;
  if (!$("model-field").hidden) body.model = $("model").value;

  const button = $("submit-report");
  button.disabled = true;
  $("report-form").setAttribute("aria-busy", "true");
  try {
    const { jobId } = await api.create(body);
    $("topic").value = "";
    navigate(jobId);
  } catch (error) {
    if (error.status === 401) lock(error);
    else showSubmitError(error);
  } finally {
    button.disabled = false;
    $("report-form").removeAttribute("aria-busy");
  }
}

function showSubmitError(error) {
  let field = FIELD_BY_CODE[error.code] ?? null;
  let message = error.message;
  if (field === null && error.code === "invalid_request") {
    // "sections: Expected int <= 20": the field first, then what is wrong with it.
    const match = /^(\w+): (.*)$/s.exec(message);
    if (match && FIELDS.includes(match[1])) [, field, message] = match;
  }
  if (field !== null && !$(field).closest("[hidden]")) {
    showFieldError(field, fieldMessage(field, message));
    $(field).focus();
    return;
  }
  showNotice("form-error", describe(error));
  $("topic").focus();
}

// --- one report ------------------------------------------------------------------------------

function closeJob() {
  if (view) view.controller.abort();
  view = null;
  $("job-view").hidden = true;
  document.title = PAGE_TITLE;
}

function resetJobView() {
  $("job-topic").textContent = "Loading the report…";
  $("job-status").textContent = "";
  $("job-progress").value = 0;
  $("job-progress-text").textContent = "";
  $("job-sections").replaceChildren();
  $("job-facts").replaceChildren();
  $("job-summary").hidden = true;
  $("job-error").hidden = true;
  $("job-shortfall").hidden = true;
  $("job-outline-pending").hidden = true;
  $("job-view").dataset.status = "loading";
  say("");
  for (const id of ["approve-outline", "cancel-job", "retry-job", "copy-job", "download-job"]) {
    $(id).hidden = true;
  }
}

async function openJob(id, { focus }) {
  if (view?.id === id) return;
  closeJob();
  const current = {
    id,
    topic: null,
    job: null,
    controller: new AbortController(),
    items: new Map(),
    outline: null,
    texts: {},
    percent: 0,
    refreshing: false,
    again: false,
  };
  view = current;
  resetJobView();
  $("job-view").hidden = false;
  markCurrentInRecent();
  let job;
  let item;
  try {
    [job, item] = await Promise.all([
      api.job(id, current.controller.signal),
      api.jobItem(id, current.controller.signal),
    ]);
  } catch (error) {
    if (view !== current || error.name === "AbortError") return;
    if (error.status === 401) lock(error);
    else if (error.status === 404) showNotFound(id);
    else showJobProblem(`This report could not be loaded: ${clause(error.message)}`);
    return;
  }
  if (view !== current) return;
  current.topic = item.topic;
  $("job-topic").textContent = item.topic;
  document.title = `${item.topic} · reportsvc`;
  renderJob(job);
  if (focus) $("job-topic").focus();
  if (!FINAL.has(job.status)) watch(current);
}

function showNotFound(id) {
  $("job-topic").textContent = "Report not found";
  $("job-view").dataset.status = "missing";
  showJobProblem(`There is no report with id ${id} here. It may have been deleted, or it was started with another API token.`);
}

function showJobProblem(message) {
  $("job-status").textContent = "";
  $("job-error").textContent = message;
  $("job-error").hidden = false;
}

/** Follow the job's event stream until its final event, reconnecting when it drops. */
async function watch(current) {
  const { signal } = current.controller;
  let delay = 1000;
  while (!signal.aborted) {
    try {
      const response = await api.events(current.id, signal);
      say("");
      delay = 1000;
      for await (const message of serverSentEvents(response.body)) {
        if (message.event === "progress") {
          // A section's event names it; its text comes with the job.
          refresh(current);
        } else if (message.event === "awaiting_review") {
          // The outline waits for approval; the stream goes on once it is given.
          renderJob(JSON.parse(message.data));
          refreshRecent();
        } else if (FINAL.has(message.event)) {
          renderJob(JSON.parse(message.data));
          refreshRecent();
          return;
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error.status === 401) {
        lock(error);
        return;
      }
      if (error.status === 404) {
        showNotFound(current.id);
        return;
      }
    }
    if (signal.aborted) return;
    // The stream ended early (an API process restarted, the network dropped): read the job
    // again and reconnect; the stream replays the steps already done.
    say("Live updates were interrupted; reconnecting…");
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 15000);
    await refresh(current);
    if (FINAL.has(current.job?.status)) {
      say("");
      return;
    }
  }
}

/** Re-read the job; calls made while one is under way collapse into one more. */
async function refresh(current) {
  if (current.refreshing) {
    current.again = true;
    return;
  }
  current.refreshing = true;
  try {
    do {
      current.again = false;
      const job = await api.job(current.id, current.controller.signal);
      if (view !== current) return;
      renderJob(job);
    } while (current.again);
  } catch (error) {
    if (error.status === 401) lock(error);
    // Otherwise the next event, or the reconnection, brings the job again.
  } finally {
    current.refreshing = false;
  }
}

function statusLine(job, outline, done) {
  switch (job.status) {
    case "processing":
      return outline
        ? `Writing: ${done} of ${outline.length} sections finished`
        : "Writing the outline…";
    case "awaiting_review":
      return `Outline ready for review: ${outline.length} sections proposed`;
    case "completed":
      return `Completed: ${outline.length} sections`;
    case "failed":
      return "Failed";
    case "cancelled":
      return "Cancelled";
    default:
      return job.status;
  }
}

function renderJob(job) {
  const current = view;
  if (!current || job.jobId !== current.id) return;
  // An answer that left the server before the job finished must not undo its end.
  if (FINAL.has(current.job?.status) && !FINAL.has(job.status)) return;
  current.job = job;
  const report = job.report;
  // A failed or cancelled job comes without its outline and sections: what was seen of
  // them stays on the page.
  const outline = report?.outline ?? job.outline ?? current.outline;
  const texts = { ...current.texts, ...(report?.sections ?? job.partialSections ?? {}) };
  current.outline = outline;
  current.texts = texts;
  const done = outline ? outline.filter((title) => Object.hasOwn(texts, title)).length : 0;
  if (job.progress !== undefined) current.percent = Math.round(job.progress * 100);
  const percent = current.percent;

  $("job-view").dataset.status = job.status;
  $("job-status").textContent = statusLine(job, outline, done);
  $("job-progress").value = percent;
  $("job-progress-text").textContent = `${percent}%`;
  $("job-outline-pending").hidden = !(job.status === "processing" && !outline);
  renderSections(current, outline ?? [], texts, job);

  const summary = $("job-summary");
  if (report?.summary && summary.hidden) {
    showMarkdown(summary.querySelector(".markdown"), report.summary);
    summary.hidden = false;
  }
  if (job.error && job.status !== "processing") {
    $("job-error").textContent =
      job.status === "failed" ? `This report failed: ${clause(job.error)}` : sentence(job.error);
    $("job-error").hidden = false;
  }
  const shortfall = job.outlineShortfall;
  $("job-shortfall").textContent = shortfall
    ? `The model proposed ${shortfall.outlined} usable sections of the ${shortfall.asked} asked for; the report has ${shortfall.outlined}.`
    : "";
  $("job-shortfall").hidden = !shortfall;
  renderFacts(job);
  $("cancel-job").hidden = !(job.status === "processing" || job.status === "awaiting_review");
  $("approve-outline").hidden = job.status !== "awaiting_review";
  $("retry-job").hidden = !(job.status === "failed" || job.status === "cancelled");
  $("copy-job").hidden = job.status !== "completed";
  $("download-job").hidden = job.status !== "completed";
}

function renderSections(current, outline, texts, job) {
  const list = $("job-sections");
  const truncated = new Set(job.truncatedSections ?? []);
  for (const title of outline) {
    let item = current.items.get(title);
    if (!item) {
      const li = document.createElement("li");
      li.className = "section";
      const heading = document.createElement("h3");
      heading.textContent = title;
      const body = document.createElement("div");
      body.className = "section-body markdown";
      const note = document.createElement("p");
      note.className = "section-note";
      note.hidden = true;
      li.append(heading, note, body);
      list.append(li);
      item = { li, body, note, rendered: false };
      current.items.set(title, item);
    }
    if (Object.hasOwn(texts, title)) {
      if (!item.rendered) {
        showMarkdown(item.body, texts[title]);
        item.rendered = true;
      }
      item.li.dataset.state = "done";
      item.li.removeAttribute("aria-busy");
    } else if (job.status === "processing") {
      item.li.dataset.state = "pending";
      item.li.setAttribute("aria-busy", "true");
      item.body.textContent = "Being written…";
    } else if (job.status === "awaiting_review") {
      item.li.dataset.state = "pending";
      item.li.removeAttribute("aria-busy");
      item.body.textContent = "Proposed; written once the outline is approved.";
    } else {
      item.li.dataset.state = "missing";
      item.li.removeAttribute("aria-busy");
      item.body.textContent = "Not written.";
    }
    if (truncated.has(title)) {
      item.note.textContent = "Cut short: the model reached its length limit for a section.";
      item.note.hidden = false;
    }
  }
}

function renderFacts(job) {
  const facts = [];
  const add = (term, value) => {
    if (value !== undefined && value !== null && value !== "") facts.push([term, value]);
  };
  add("Model", job.model);
  if (job.options) {
    add("Sections asked for", String(job.options.sections));
    add("Detail", job.options.detail);
    add("Language", job.options.language ?? "English");
  }
  if (job.usage) {
    const { promptTokens, completionTokens, totalTokens } = job.usage;
    const number = (n) => n.toLocaleString();
    add("Tokens", `${number(totalTokens)} (${number(promptTokens)} prompt, ${number(completionTokens)} completion)`);
  }
  if (typeof job.estimatedCostUsd === "number") add("Estimated cost", `$${job.estimatedCostUsd.toFixed(4)}`);
  if (job.createdAt) add("Started", clock(job.createdAt));
  if (job.finishedAt) add("Finished", clock(job.finishedAt));
  $("job-facts").replaceChildren(
    ...facts.flatMap(([term, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      return [dt, dd];
    }),
  );
}

// --- a report's buttons -------------------------------------------------------------------------

async function withButton(id, action) {
  const button = $(id);
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    if (error.status === 401) lock(error);
    else say(error.message ? sentence(error.message) : String(error));
  } finally {
    button.disabled = false;
  }
}

function cancelJob() {
  const current = view;
  return withButton("cancel-job", async () => {
    try {
      await api.cancel(current.id);
    } catch (error) {
      if (error.status !== 409) throw error;
      say(`It could not be cancelled: ${clause(error.message)}`);
    }
    await refresh(current);
    refreshRecent();
  });
}

/** The outline as proposed becomes the report's (edit it through the API: PUT .../outline). */
function approveOutline() {
  const current = view;
  return withButton("approve-outline", async () => {
    try {
      await api.approveOutline(current.id, current.outline);
    } catch (error) {
      if (error.status !== 409) throw error;
      say(`It could not be approved: ${clause(error.message)}`);
    }
    await refresh(current);
    refreshRecent();
  });
}

function retryJob() {
  const current = view;
  return withButton("retry-job", async () => {
    const { options: chosen, model } = current.job;
    const body = { topic: current.topic, sections: chosen.sections, detail: chosen.detail };
    if (chosen.language) body.language = chosen.language;
    if (options.models.includes(model)) body.model = model;
    const { jobId } = await api.create(body);
    navigate(jobId);
  });
}

function copyMarkdown() {
  const current = view;
  return withButton("copy-job", async () => {
    const text = await api.markdown(current.id);
    if (!navigator.clipboard) {
      say("This browser does not allow copying from this page; use Download Markdown.");
      return;
    }
    await navigator.clipboard.writeText(text);
    say("Copied the report as Markdown.");
  });
}

function downloadMarkdown() {
  const current = view;
  return withButton("download-job", async () => {
    const text = await api.markdown(current.id);
    const url = URL.createObjectURL(new Blob([text], { type: "text/markdown;charset=utf-8" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = fileName(current.topic);
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    say(`Downloaded ${link.download}.`);
  });
}

// --- recent reports -------------------------------------------------------------------------------

/** Re-read the jobs shown (one request), and keep doing so while any is processing. */
async function refreshRecent() {
  clearTimeout(recent.timer);
  const seq = ++recent.seq;
  const limit = Math.min(100, Math.max(PAGE_SIZE, recent.jobs.length));
  let page;
  try {
    page = await api.list(limit);
  } catch (error) {
    if (seq !== recent.seq) return;
    if (error.status === 401) {
      lock(error);
      return;
    }
    recent.timer = setTimeout(refreshRecent, POLL_MS * 3);
    return;
  }
  if (seq !== recent.seq) return;
  recent.jobs = page.jobs;
  recent.next = page.nextCursor;
  renderRecent();
  if (recent.jobs.some((job) => job.status === "processing")) {
    recent.timer = setTimeout(refreshRecent, POLL_MS);
  }
}

async function moreRecent() {
  const seq = ++recent.seq;
  clearTimeout(recent.timer);
  const before = recent.jobs.length;
  try {
    const page = await api.list(PAGE_SIZE, recent.next);
    if (seq !== recent.seq) return;
    recent.jobs.push(...page.jobs);
    recent.next = page.nextCursor;
  } catch (error) {
    if (error.status === 401) lock(error);
    return;
  }
  renderRecent();
  $("recent-list").children[before]?.querySelector("a")?.focus();
  if (recent.jobs.some((job) => job.status === "processing")) {
    recent.timer = setTimeout(refreshRecent, POLL_MS);
  }
}

function recentItem() {
  const li = document.createElement("li");
  li.className = "recent-item";
  const link = document.createElement("a");
  link.className = "recent-link";
  const meta = document.createElement("div");
  meta.className = "recent-meta";
  const status = document.createElement("span");
  status.className = "badge";
  const progress = document.createElement("progress");
  progress.max = 100;
  const time = document.createElement("time");
  meta.append(status, progress, time);
  li.append(link, meta);
  return li;
}

// Items are updated in place (never rebuilt), so keyboard focus survives each refresh.
function renderRecent() {
  const list = $("recent-list");
  const existing = new Map([...list.children].map((li) => [li.dataset.jobId, li]));
  recent.jobs.forEach((job, index) => {
    const li = existing.get(job.jobId) ?? recentItem();
    existing.delete(job.jobId);
    li.dataset.jobId = job.jobId;
    li.dataset.status = job.status;
    const link = li.querySelector("a");
    link.href = `?job=${encodeURIComponent(job.jobId)}`;
    link.textContent = job.topic;
    const percent = Math.round(job.progress * 100);
    li.querySelector(".badge").textContent =
      job.status === "processing"
        ? `processing, ${percent}%`
        : job.status === "awaiting_review"
          ? "awaiting review"
          : job.status;
    const progress = li.querySelector("progress");
    progress.value = percent;
    progress.hidden = job.status !== "processing";
    progress.setAttribute("aria-label", `Progress of ${job.topic}`);
    const time = li.querySelector("time");
    time.dateTime = job.createdAt;
    time.textContent = clock(job.createdAt);
    if (list.children[index] !== li) list.insertBefore(li, list.children[index] ?? null);
  });
  for (const gone of existing.values()) gone.remove();
  $("recent-empty").hidden = recent.jobs.length > 0;
  $("recent-more").hidden = !recent.next;
  markCurrentInRecent();
}

function markCurrentInRecent() {
  for (const li of $("recent-list").children) {
    const link = li.querySelector("a");
    if (view && li.dataset.jobId === view.id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function followLink(event) {
  const link = event.target.closest("a.recent-link");
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(link.closest("li").dataset.jobId);
}

// --- wiring ---------------------------------------------------------------------------------

$("token-form").addEventListener("submit", submitToken);
$("forget-token").addEventListener("click", forgetToken);
$("report-form").addEventListener("submit", submitReport);
$("approve-outline").addEventListener("click", approveOutline);
$("cancel-job").addEventListener("click", cancelJob);
$("retry-job").addEventListener("click", retryJob);
$("copy-job").addEventListener("click", copyMarkdown);
$("download-job").addEventListener("click", downloadMarkdown);
$("recent-more").addEventListener("click", moreRecent);
$("recent-list").addEventListener("click", followLink);
window.addEventListener("popstate", () => route({ focus: false }));
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && !$("app").hidden) refreshRecent();
});

start();
