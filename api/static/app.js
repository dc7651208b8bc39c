// markq web app: the review keyboard, class uploads, live progress and the key editor.
// Plain JavaScript, no build step and no CDN; every page works without it except these four.
"use strict";

function i18n() {
  const node = document.getElementById("i18n");
  return node ? JSON.parse(node.innerHTML) : {};
}

function format(text, values) {
  return text.replace(/%\((\w+)\)s/g, (_, name) => String(values[name]));
}

// --- review: one answer group at a time, the keyboard alone --------------------------------------
function startReview(root) {
  const source = document.getElementById("groups");
  if (!source) return;
  const groups = JSON.parse(source.textContent);
  const text = i18n();
  const $ = (id) => document.getElementById(id);
  const state = { at: 0, busy: false, decided: new Set() };
  const timings = [];
  window.markqReview = { timings, groups };
  let answersLeft = groups.reduce((n, g) => n + g.papers.length, 0);

  const preload = (index) => {
    const group = groups[index];
    if (group && group.papers[0].crop_url) new Image().src = group.papers[0].crop_url;
  };

  function verdictText(group) {
    if (group.model_score === null) return text.unread;
    const said = group.model_is_correct ? text.right : text.wrong;
    return `${said} (${group.model_score} / ${group.max_score} ${text.points})`;
  }

  function show(index) {
    state.at = index;
    const group = groups[index];
    $("position").textContent = String(index + 1);
    $("question").textContent = group.question_id;
    $("reading").textContent = group.student_answer || "—";
    $("key").textContent = group.correct_answer;
    $("suggested").textContent = verdictText(group);
    $("reason").textContent = group.review_reason || "";
    $("students").textContent = group.papers.map((p) => (p.class_label ? `${p.class_label} ${p.student_ref}` : p.student_ref)).join(", ");
    $("max").textContent = String(group.max_score);
    const crop = group.papers[0].crop_url;
    $("crop").hidden = !crop;
    $("no-crop").hidden = Boolean(crop);
    if (crop) $("crop").src = crop;
    $("reading-form").hidden = true;
    $("score-form").hidden = true;
    $("reading").hidden = false;
    $("error").hidden = true;
    $("card").dataset.group = String(index);
    $("card").classList.toggle("decided", state.decided.has(index));
    $("card").focus({ preventScroll: true });
    preload(index + 1);
    preload(index + 2);
  }

  function nextOpen(from, step) {
    for (let i = from + step; i >= 0 && i < groups.length; i += step) if (!state.decided.has(i)) return i;
    return -1;
  }

  function advance() {
    const next = nextOpen(state.at, 1) >= 0 ? nextOpen(state.at, 1) : nextOpen(-1, 1);
    if (next < 0) {
      $("card").hidden = true;
      $("keys").hidden = true;
      $("finished").hidden = false;
      $("finished").querySelector("a").focus();
      return;
    }
    show(next);
  }

  function decide(body) {
    const index = state.at;
    const group = groups[index];
    state.decided.add(index);
    answersLeft -= group.papers.length;
    $("answers-left").textContent = String(answersLeft);
    advance(); // the next answer is shown at once; the decision is saved meanwhile
    fetch(root.dataset.url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf },
      body: JSON.stringify({ question_id: group.question_id, papers: group.papers.map((p) => p.paper_id), ...body }),
    })
      .then(async (reply) => {
        if (!reply.ok) {
          const detail = await reply.json().catch(() => ({ error: { message: reply.statusText } }));
          throw new Error(detail.error ? detail.error.message : reply.statusText);
        }
        window.markqReview.saved = (window.markqReview.saved || 0) + 1;
      })
      .catch((error) => {
        state.decided.delete(index);
        answersLeft += group.papers.length;
        $("answers-left").textContent = String(answersLeft);
        $("card").hidden = false;
        $("keys").hidden = false;
        $("finished").hidden = true;
        show(index);
        $("error").textContent = format(text.failed, { reason: error.message });
        $("error").hidden = false;
      });
  }

  function openForm(formId, inputId, value) {
    $(formId).hidden = false;
    if (formId === "reading-form") $("reading").hidden = true;
    const input = $(inputId);
    input.value = value;
    input.focus();
    input.select();
  }

  $("reading-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("reading-input").value.trim();
    if (value) decide({ action: "reading", reading: value });
  });
  $("score-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = Number($("score-input").value.replace(",", "."));
    const max = groups[state.at].max_score;
    if (Number.isFinite(value) && value >= 0 && value <= max) decide({ action: "score", score: value });
    else $("score-input").setAttribute("aria-invalid", "true");
  });
  for (const id of ["reading-input", "score-input"]) {
    $(id).addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        show(state.at);
      }
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey || event.altKey) return;
    if ($("card").hidden) return;
    const group = groups[state.at];
    const key = event.key.toLowerCase();
    const actions = {
      enter: () => group.model_score !== null && decide({ action: "accept" }),
      a: () => group.model_score !== null && decide({ action: "accept" }),
      r: () => decide({ action: "right" }),
      w: () => decide({ action: "wrong" }),
      s: () => openForm("score-form", "score-input", ""),
      e: () => openForm("reading-form", "reading-input", group.student_answer),
      n: () => show(nextOpen(state.at, 1) >= 0 ? nextOpen(state.at, 1) : state.at),
      arrowright: () => show(nextOpen(state.at, 1) >= 0 ? nextOpen(state.at, 1) : state.at),
      arrowleft: () => show(Math.max(0, state.at - 1)),
    };
    if (actions[key]) {
      event.preventDefault();
      actions[key]();
      // keystroke to the next answer painted: the review screen's speed, read by the browser test
      const pressed = event.timeStamp;
      if (["enter", "a", "r", "w"].includes(key)) requestAnimationFrame(() => timings.push(performance.now() - pressed));
    }
  });
  show(0);
}

// --- live progress ------------------------------------------------------------------------------
function startProgress(section) {
  let known = document.querySelectorAll("tr[data-paper]").length;
  async function poll() {
    let data;
    try {
      data = await (await fetch(section.dataset.url, { headers: { Accept: "application/json" } })).json();
    } catch (error) {
      return setTimeout(poll, 10000);
    }
    if (data.papers.length !== known) return window.location.reload();
    for (const [status, n] of Object.entries(data.progress)) {
      const pill = section.querySelector(`[data-status="${status}"] b`);
      if (pill) pill.textContent = String(n);
    }
    document.getElementById("cost").textContent = `$${Number(data.cost_usd).toFixed(4)}`;
    const estimate = document.getElementById("estimate");
    if (estimate) estimate.textContent = `$${Number(data.estimated_usd).toFixed(4)}`;
    const review = document.getElementById("review-count");
    if (review) review.textContent = String(data.review);
    for (const paper of data.papers) {
      const row = document.querySelector(`tr[data-paper="${paper.id}"]`);
      if (!row || row.querySelector("[data-role=status]").classList.contains(paper.status)) continue;
      return window.location.reload(); // a paper changed state: show its score, reason and buttons
    }
    known = data.papers.length;
    if (data.in_flight > 0) setTimeout(poll, 2000);
  }
  setTimeout(poll, 2000);
}

// --- uploading a class ----------------------------------------------------------------------------
function startUploader(root) {
  const text = i18n();
  const files = [];
  const $ = (id) => document.getElementById(id);
  const byName = (a, b) => a.path.localeCompare(b.path, undefined, { numeric: true });

  const zips = [];

  function add(list) {
    for (const file of list) {
      if (/\.zip$/i.test(file.name)) {
        zips.push(file); // a class archive: the server unpacks it (a folder per student)
        continue;
      }
      const path = file.webkitRelativePath || file.relativePath || file.name;
      if (file.name.startsWith(".")) continue;
      files.push({ file, path });
    }
    plan();
  }

  function students() {
    const grouping = document.querySelector("input[name=grouping]:checked").value;
    const roster = $("roster").value.split("\n").map((s) => s.trim()).filter(Boolean);
    const sorted = [...files].sort(byName);
    let groups = [];
    if (grouping === "folder") {
      const folders = new Map();
      for (const item of sorted) {
        const parts = item.path.split("/");
        const name = parts.length > 1 ? parts[parts.length - 2] : "";
        if (!folders.has(name)) folders.set(name, []);
        folders.get(name).push(item);
      }
      groups = [...folders.entries()].map(([name, items]) => ({ name, items }));
    } else if (grouping === "every") {
      const every = Math.max(1, Number($("every").value) || 1);
      for (let i = 0; i < sorted.length; i += every) groups.push({ name: "", items: sorted.slice(i, i + every) });
    } else {
      groups = sorted.map((item) => ({ name: item.path.split("/").pop().replace(/\.[^.]+$/, ""), items: [item] }));
    }
    return groups.map((group, n) => ({ ...group, name: roster[n] || group.name }));
  }

  function plan() {
    const list = students();
    const pages = list.reduce((n, s) => n + s.items.length, 0);
    const parts = list.length ? [format(text.students, { n: list.length, p: pages })] : [];
    $("plan").textContent = [...parts, ...zips.map((zip) => zip.name)].join(" · ");
    $("start").disabled = !list.length && !zips.length;
  }

  // a class ZIP straight to storage by URL, then unpacked by the server (a folder per student)
  async function sendZip(zip) {
    const row = document.createElement("li");
    row.innerHTML = "<b></b><progress max='1' value='0'></progress><span class='status'></span>";
    row.querySelector("b").textContent = zip.name;
    $("results").appendChild(row);
    const status = row.querySelector(".status");
    const refuse = (message) => {
      status.textContent = `${text.refused}: ${message}`;
      row.classList.add("refused");
      row.dataset.state = "refused";
    };
    // the same ZIP chosen again after a dropped link resumes its upload (the parts not stored)
    const classLabel = $("class-label").value.trim(); // a corrected class is a new upload
    const remembered = `markq-zip:${root.dataset.examId}:${classLabel}:${zip.name}:${zip.size}:${zip.lastModified}`;
    let declared = null;
    const earlier = localStorage.getItem(remembered);
    if (earlier) {
      const again = await api(`${root.dataset.bulk}${earlier}/upload`, { method: "GET" });
      if (again.ok) declared = again;
      else if (again.status === 409) declared = await api(`${root.dataset.bulk}${earlier}`, { method: "GET" });
      if (declared && !declared.ok) declared = null;
    }
    if (!declared) {
      declared = await api(root.dataset.zip, {
        method: "POST",
        body: JSON.stringify({ name: zip.name, size: zip.size, class_label: classLabel }),
      });
      if (!declared.ok) return refuse((declared.body.error || {}).message || declared.status);
      localStorage.setItem(remembered, declared.body.bulk_id);
    }
    const bar = row.querySelector("progress");
    const target = declared.body.upload;
    let state = { ok: true, body: declared.body };
    if (target) {
      try {
        if (target.parts && target.parts.length) {
          // a large ZIP in parts, each to its own URL: a dropped link loses one part, not the ZIP
          for (const part of target.parts) {
            if (part.uploaded) continue;
            const piece = zip.slice(part.offset, part.offset + part.size);
            await put({ url: part.url, headers: {} }, piece, (loaded) => { bar.value = (part.offset + loaded) / (zip.size || 1); });
          }
        } else if (!target.uploaded) {
          await put(target, zip, (loaded) => { bar.value = loaded / (zip.size || 1); });
        }
      } catch (error) {
        return refuse(`${error.message}: ${text.again}`);
      }
      state = await api(declared.body.complete_url, { method: "POST" });
    }
    bar.value = 1;
    status.textContent = text.unpacking;
    while (state.ok && !["done", "failed"].includes(state.body.status)) {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      state = await api(declared.body.status_url, { method: "GET" });
    }
    if (!state.ok) return refuse((state.body.error || {}).message || state.status);
    localStorage.removeItem(remembered); // unpacked: the same ZIP again is a new upload (nothing made twice)
    if (state.body.status === "failed") return refuse(state.body.status_reason);
    const result = state.body.result;
    status.textContent = format(text.zip, {
      created: result.created.length, existing: result.existing.length, refused: result.refused.length,
    });
    row.dataset.state = "uploaded";
    for (const refusal of result.refused) {
      const line = document.createElement("li");
      line.className = "refused";
      line.textContent = `${text.refused}: ${refusal.file}: ${refusal.reason}`;
      $("results").appendChild(line);
    }
  }

  const TYPES = { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp", tif: "image/tiff",
    tiff: "image/tiff", heic: "image/heic", heif: "image/heif", pdf: "application/pdf" };
  const typeOf = (file) => file.type || TYPES[file.name.split(".").pop().toLowerCase()] || "application/octet-stream";

  async function api(url, options = {}) {
    const reply = await fetch(url, {
      ...options,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf, ...(options.headers || {}) },
    });
    const body = await reply.json().catch(() => ({}));
    return { ok: reply.ok, status: reply.status, body };
  }

  // One file straight to storage, with its progress (the URL carries its own authority). A link
  // that drops for a moment, or storage briefly away (408, 429, 5xx), costs a try again, not the
  // teacher's: three tries, 1 s then 2 s apart. A PUT replaces its object whole: nothing twice.
  const TRIED_AGAIN = [408, 429, 500, 502, 503, 504];
  async function put(target, file, onProgress) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await putOnce(target, file, onProgress);
      } catch (error) {
        if (!error.again || attempt >= 3) throw error;
        onProgress(0); // the bar shows what is stored, not what was sent
        await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** (attempt - 1)));
      }
    }
  }

  function putOnce(target, file, onProgress) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      const fail = (message, again) => reject(Object.assign(new Error(message), { again }));
      request.open("PUT", target.url);
      for (const [name, value] of Object.entries(target.headers)) request.setRequestHeader(name, value);
      request.upload.onprogress = (event) => onProgress(event.loaded);
      request.onload = () => (request.status < 300 ? resolve()
        : fail(format(text.storage, { status: request.status }), TRIED_AGAIN.includes(request.status)));
      request.onerror = () => fail(text.dropped, true);
      request.send(file);
    });
  }

  // one student: declared, uploaded by URL, completed; a run cut short resumes (same files, same paper)
  async function send(student, row) {
    const status = row.querySelector(".status");
    const bar = row.querySelector("progress");
    const total = student.items.reduce((n, item) => n + item.file.size, 0) || 1;
    const remembered = `markq-upload:${root.dataset.examId}:${student.name}:` +
      student.items.map((item) => `${item.path}:${item.file.size}:${item.file.lastModified}`).join("|");
    const refuse = (message) => {
      status.textContent = `${text.refused}: ${message}`;
      row.classList.add("refused");
      row.dataset.state = "refused";
    };
    try {
      let upload = null;
      const earlier = localStorage.getItem(remembered);
      if (earlier) {
        const again = await api(`${root.dataset.papers}${earlier}/upload`, { method: "GET" });
        if (again.ok) upload = again.body;
        else if (again.status === 409) {
          bar.value = 1;
          status.textContent = text.uploaded;
          row.dataset.state = "uploaded";
          return; // completed by an earlier run: nothing to send again
        }
      }
      if (!upload) {
        const files = student.items.map((item) => ({ name: item.file.name, size: item.file.size, content_type: typeOf(item.file) }));
        const made = await api(root.dataset.url, {
          method: "POST",
          body: JSON.stringify({ student_ref: student.name, class_label: $("class-label").value.trim(), files }),
        });
        if (!made.ok) {
          const error = made.body.error || {};
          const where = error.details && error.details.file ? `${error.details.file}: ` : "";
          return refuse(`${where}${error.message || made.status}`);
        }
        upload = made.body;
        localStorage.setItem(remembered, upload.paper_id);
      }
      let done = 0;
      for (const [index, target] of upload.files.entries()) {
        const file = student.items[index].file;
        if (!target.uploaded) await put(target, file, (loaded) => { bar.value = (done + loaded) / total; });
        done += file.size;
        bar.value = done / total;
      }
      const finished = await api(upload.complete_url, { method: "POST" });
      if (!finished.ok) return refuse((finished.body.error || {}).message || finished.status);
      bar.value = 1;
      status.textContent = text.uploaded;
      row.dataset.state = "uploaded";
    } catch (error) {
      refuse(`${error.message}; ${text.again}`);
    }
  }

  async function start() {
    $("start").disabled = true;
    const list = students();
    const queue = [];
    for (const student of list) {
      const row = document.createElement("li");
      row.dataset.student = student.name;
      row.innerHTML = "<b></b><span class='files muted'></span><progress max='1' value='0'></progress><span class='status'></span>";
      row.querySelector("b").textContent = student.name || "?";
      row.querySelector(".files").textContent = student.items.map((i) => i.path).join(", ");
      $("results").appendChild(row);
      if (!student.name) {
        row.querySelector(".status").textContent = `${text.refused}: ${text.noname}`;
        row.classList.add("refused");
        row.dataset.state = "refused";
        continue;
      }
      row.querySelector(".status").textContent = text.uploading;
      queue.push([student, row]);
    }
    const workers = Array.from({ length: 3 }, async () => {
      while (queue.length) {
        const [student, row] = queue.shift();
        await send(student, row);
      }
    });
    await Promise.all(workers);
    for (const zip of zips.splice(0)) await sendZip(zip);
    files.length = 0;
    plan();
    $("done").hidden = false;
  }

  async function walk(entry, prefix) {
    if (entry.isFile) {
      const file = await new Promise((resolve) => entry.file(resolve));
      file.relativePath = prefix + file.name;
      return [file];
    }
    const reader = entry.createReader();
    const found = [];
    for (;;) {
      const batch = await new Promise((resolve) => reader.readEntries(resolve));
      if (!batch.length) break;
      for (const child of batch) found.push(...(await walk(child, `${prefix}${entry.name}/`)));
    }
    return found;
  }

  for (const id of ["folder", "files", "camera"]) {
    $(id).addEventListener("change", (event) => {
      add([...event.target.files]);
      event.target.value = ""; // the same files chosen again (to resume) are a change again
    });
  }
  for (const input of document.querySelectorAll("input[name=grouping], #every, #roster")) input.addEventListener("input", plan);
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const entries = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry()).filter(Boolean);
    const found = [];
    for (const entry of entries) found.push(...(await walk(entry, "")));
    add(found);
  });
  $("start").addEventListener("click", start);
}

// --- answer regions on the blank paper: drag into place, resize by the corner, save -------------------
function startRegions(root) {
  const moved = new Map();
  const save = document.getElementById("save-regions");
  for (const page of root.querySelectorAll(".region-page")) {
    const width = Number(page.dataset.width);
    const height = Number(page.dataset.height);
    for (const region of page.querySelectorAll(".region")) {
      let box = region.dataset.box.split(",").map(Number);
      const place = () => {
        region.style.left = `${(100 * box[0]) / width}%`;
        region.style.top = `${(100 * box[1]) / height}%`;
        region.style.width = `${(100 * (box[2] - box[0])) / width}%`;
        region.style.height = `${(100 * (box[3] - box[1])) / height}%`;
      };
      place();
      region.addEventListener("pointerdown", (event) => {
        event.preventDefault();
        const resizing = event.target.classList.contains("handle");
        const scale = width / page.clientWidth;
        const start = [event.clientX, event.clientY];
        const from = [...box];
        region.setPointerCapture(event.pointerId);
        const follow = (move) => {
          const dx = Math.round((move.clientX - start[0]) * scale);
          const dy = Math.round((move.clientY - start[1]) * scale);
          // moved whole within the page (its size kept), or resized by its corner
          const x = Math.max(-from[0], Math.min(dx, width - from[2]));
          const y = Math.max(-from[1], Math.min(dy, height - from[3]));
          box = resizing
            ? [from[0], from[1], Math.min(width, Math.max(from[0] + 10, from[2] + dx)), Math.min(height, Math.max(from[1] + 10, from[3] + dy))]
            : [from[0] + x, from[1] + y, from[2] + x, from[3] + y];
          place();
        };
        const stop = () => {
          region.removeEventListener("pointermove", follow);
          region.classList.add("moved");
          moved.set(region.dataset.qid, { page: Number(page.dataset.page), box });
          save.disabled = false;
        };
        region.addEventListener("pointermove", follow);
        region.addEventListener("pointerup", stop, { once: true });
      });
    }
  }
  save.addEventListener("click", async () => {
    const said = document.getElementById("regions-saved");
    said.textContent = "…"; // until this save is answered (not the last one's ✓)
    const reply = await fetch(root.dataset.url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf },
      body: JSON.stringify({ regions: Object.fromEntries(moved) }),
    });
    const body = await reply.json().catch(() => ({}));
    said.textContent = reply.ok ? "✓" : (body.error || {}).message || reply.status;
    if (reply.ok) {
      moved.clear();
      save.disabled = true;
    }
  });
}

// --- the answer key editor --------------------------------------------------------------------------
function startKeyEditor(table) {
  const body = table.querySelector("tbody");
  document.getElementById("add-row").addEventListener("click", () => {
    const last = body.lastElementChild;
    const row = last.cloneNode(true);
    for (const input of row.querySelectorAll("input")) input.value = "";
    const number = Number(last.querySelector("[name=q_id]").value);
    row.querySelector("[name=q_id]").value = Number.isFinite(number) ? String(number + 1) : "";
    row.querySelector("[name=q_points]").value = last.querySelector("[name=q_points]").value;
    body.appendChild(row);
    row.querySelector("[name=q_answer]").focus();
  });
  body.addEventListener("click", (event) => {
    if (event.target.classList.contains("remove-row") && body.children.length > 1) event.target.closest("tr").remove();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const review = document.getElementById("review");
  if (review) startReview(review);
  const progress = document.getElementById("progress");
  if (progress) startProgress(progress);
  const uploader = document.getElementById("uploader");
  if (uploader) startUploader(uploader);
  const key = document.getElementById("key");
  if (key && key.tagName === "TABLE") startKeyEditor(key);
  const regions = document.getElementById("regions");
  if (regions) startRegions(regions);
  const print = document.getElementById("print");
  if (print) print.addEventListener("click", () => window.print());
});
